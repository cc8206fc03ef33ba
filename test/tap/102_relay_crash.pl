# test/tap/102_relay_crash.pl: kill -9 of the relay loses nothing.
#
# (a) While streaming: two pgbench clients commit a steady stream of small
#     transactions (1 to 3 inserts with unique ids each, plus transactions that
#     roll back).  The relay is killed with SIGKILL while it has messages in
#     flight, the writers go on for a while, stop, and the position
#     pg_current_wal_insert_lsn() is recorded; a new relay run with --endpos
#     must exit 0 without a new snapshot, and then:
#       - every committed id is in Kafka, with the row's values (duplicates
#         allowed: at-least-once; every copy of an event_id is identical);
#       - Kafka holds nothing else (no row of a rolled-back transaction);
#       - the slot's confirmed_flush_lsn reached the recorded position.
# (b) During the snapshot: a 40,000-row table, a broker slowed down with
#     `rtt` and a small producer queue (-X queue.buffering.max.messages) make
#     the snapshot take seconds; the relay is killed with SIGKILL once rows
#     reach Kafka but before "snapshot complete".  The state topic must then
#     have no "complete" record for the slot.  Rows change while it is down.
#     The next start must drop the slot, create it again and take a new
#     snapshot; then Kafka's last record per key equals the table, and the
#     state topic records the snapshot as complete.  Rows the aborted snapshot
#     sent and that were deleted before the new one must not stay in Kafka's
#     compacted view either (checked separately).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use RelayTest;

my $json = JSON::PP->new->canonical;

my $node = logical_node('crash', 'max_connections = 30');

my $broker = start_broker();
my $bs = $broker->{bootstrap};

# ---- (a) kill -9 while streaming ---------------------------------------------
$node->safe_psql('postgres', q{
CREATE EXTENSION cdc_relay;
CREATE TABLE ids (id bigserial PRIMARY KEY, client int NOT NULL, note text NOT NULL);
});

my $script = q{
\set n random(1, 3)
\set rb random(1, 10)
BEGIN;
INSERT INTO ids (client, note) SELECT :client_id, 'row ' || g FROM generate_series(1, :n) g;
COMMIT;
\if :rb = 1
BEGIN;
INSERT INTO ids (client, note) VALUES (:client_id, 'ROLLED-BACK');
ROLLBACK;
\endif
};
my $script_file = PostgreSQL::Test::Utils::tempdir() . '/writer.sql';
PostgreSQL::Test::Utils::append_to_file($script_file, $script);

my $relay = start_relay($node, $broker);
ok($relay->wait_for_log(qr/streaming from slot "cdc_relay" into Kafka/), 'relay streams')
  or BAIL_OUT('relay did not start');

my $writers = start_process(
	[ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', '600', '-f', $script_file,
	  $node->connstr('postgres') ],
	name => 'writers');

# kill it once it has confirmed some of the writers' work (so it is busy)
my $start = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_until(sub {
	my $c = confirmed_flush($node, 'cdc_relay');
	$node->safe_psql('postgres', "SELECT '$c'::pg_lsn - '$start' > 200000") eq 't' },
	'the relay to confirm the writers\' work'), 'relay confirms while the writers run');
ok($relay->kill('KILL'), 'kill -9 the relay while streaming');
is($relay->finish, 128 + 9, 'relay died of SIGKILL');
ok($writers->alive, 'writers were running when the relay died');

# the writers go on for a while with no relay, then stop
my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_until(sub {
	$node->safe_psql('postgres', "SELECT pg_current_wal_insert_lsn() - '$lsn' > 200000") eq 't' },
	'the writers to go on'), 'writers wrote while the relay was down');
$writers->kill('TERM');
$writers->finish;
my $endpos = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
my $lost_at = confirmed_flush($node, 'cdc_relay');
note "relay killed; slot confirmed $lost_at, end position $endpos";

my ($rc, $out, $err) = run_relay($node, $broker, '--endpos', $endpos);
is($rc, 0, 'relay run with --endpos after the crash exits 0') or diag($err);
like($err, qr/reached --endpos/, 'it stopped at --endpos');
unlike($err, qr/snapshot at|created replication slot|dropping slot/, 'no new snapshot after the crash');
ok(wait_for_confirmed($node, 'cdc_relay', $endpos, 10), "confirmed_flush_lsn reached $endpos");

{
	my @msgs = consume($bs, 'cdc.public.ids');
	my $rows = $json->decode($node->safe_psql('postgres', "SELECT json_agg(t.*) FROM ids t"));
	my %db = map { $json->encode({ id => $_->{id} }) => $json->encode($_) } @$rows;
	my (%kafka, %by_event, @errors);
	my $dups = 0;
	for my $m (@msgs)
	{
		my $ev = $json->decode($m->{value});
		push @errors, "op $ev->{op} on ids (only inserts were made)" unless $ev->{op} eq 'c';
		my $k = $json->encode($json->decode($m->{key}));
		my $after = $json->encode($ev->{after});
		push @errors, "key $k: two different rows in Kafka" if exists $kafka{$k} && $kafka{$k} ne $after;
		$kafka{$k} = $after;
		my $id = $m->{headers}{event_id} // '';
		if (exists $by_event{$id})
		{
			$dups++;
			push @errors, "event $id: a copy differs" if $by_event{$id} ne $m->{value};
		}
		$by_event{$id} = $m->{value};
	}
	my @missing = grep { !exists $kafka{$_} } sort keys %db;
	my @extra = grep { !exists $db{$_} } sort keys %kafka;
	my @diff = grep { exists $kafka{$_} && $kafka{$_} ne $db{$_} } keys %db;
	note scalar(@msgs) . " messages for " . scalar(keys %db) . " rows, $dups duplicates";
	ok(keys(%db) > 1000, 'writers committed rows (' . scalar(keys %db) . ')');
	is(scalar(@missing), 0, 'every committed row is in Kafka')
	  or diag("missing: @missing[0 .. ($#missing < 9 ? $#missing : 9)]");
	is(scalar(@extra), 0, 'nothing in Kafka that is not in the table (no rolled-back rows)')
	  or diag("extra: @extra[0 .. ($#extra < 9 ? $#extra : 9)]");
	is(scalar(@diff), 0, 'rows in Kafka have the table\'s values');
	is(scalar(@errors), 0, 'only inserts; duplicates are exact copies of the same event')
	  or diag(join("\n", @errors[ 0 .. ($#errors < 9 ? $#errors : 9) ]));
	unlike(join("\n", map { $_->{value} // '' } @msgs), qr/ROLLED-BACK/, 'no rolled-back row');
}

# ---- (b) kill -9 during the snapshot ---------------------------------------------
$node->safe_psql('postgres', q{
CREATE DATABASE snapdb;
});
$node->safe_psql('snapdb', q{
CREATE EXTENSION cdc_relay;
CREATE TABLE big (id int PRIMARY KEY, v text NOT NULL, n int NOT NULL);
INSERT INTO big SELECT g, 'value ' || g, 0 FROM generate_series(1, 40000) g;
ANALYZE big;
});
# 8 partitions: the test broker keeps only ~5 MiB per partition, and this topic
# gets the table up to twice
like($broker->command('create snap.public.big 8'), qr/^ok/, 'create the topic with 8 partitions');
like($broker->command('rtt all 100'), qr/^ok/, 'slow the broker down');

my @snap_args = ({ dbname => 'snapdb' }, '-S', 'snap_slot', '--topic-prefix', 'snap',
	'--snapshot-jobs', '1');
my $sysid = $node->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()');
my $state_key = "$sysid/snapdb/snap_slot";

$relay = start_relay($node, $broker, @snap_args, '-X', 'queue.buffering.max.messages=1000');
ok($relay->wait_for_log(qr/snapshot at /), 'snapshot starts');
# some rows have reached Kafka
ok(wait_until(sub {
	my ($o, $e) = ('', '');
	IPC::Run::run([ 'kcat', '-b', $bs, '-C', '-t', 'snap.public.big', '-o', 'beginning', '-c', '1',
		'-e', '-q' ], '<', \undef, '>', \$o, '2>', \$e, IPC::Run::timeout(30));
	$o ne '' }, 'snapshot rows in Kafka'), 'snapshot rows reach Kafka');
ok($relay->kill('KILL'), 'kill -9 the relay during the snapshot');
is($relay->finish, 128 + 9, 'relay died of SIGKILL');
unlike($relay->log_content, qr/snapshot complete/, 'the snapshot had not completed');
my $cp1 = ($relay->log_content =~ /created replication slot "snap_slot", consistent point (\S+?),/)[0];
ok(defined $cp1, 'the slot was created');
my %partial;    # keys of the aborted snapshot's rows
{
	my @st = grep { ($_->{key} // '') eq $state_key } consume($bs, 'snap.__state');
	ok(@st >= 1, 'state topic has a record for the slot');
	ok(!(grep { $json->decode($_->{value})->{snapshot} eq 'complete' } @st),
		'state topic has no "complete" record for the slot');
	my @rows = grep { ($_->{headers}{op} // '') eq 'r' } consume($bs, 'snap.public.big');
	%partial = map { ($_->{key} => 1) } @rows;
	note scalar(@rows) . " snapshot rows in Kafka when the relay died";
	ok(@rows < 40000, 'part of the snapshot was in Kafka (' . scalar(@rows) . ' rows)');
}

# changes while the relay is down: they happened after the first slot's
# consistent point, the new snapshot must have them
$node->safe_psql('snapdb', q{
UPDATE big SET n = 1 WHERE id % 1000 = 7;
DELETE FROM big WHERE id % 1000 = 8;
INSERT INTO big SELECT g, 'new ' || g, 2 FROM generate_series(40001, 40100) g;
});

like($broker->command('rtt all 0'), qr/^ok/, 'broker back to full speed');
$relay = start_relay($node, $broker, @snap_args);
ok($relay->wait_for_log(qr/snapshot recorded as complete/), 'second run completes a snapshot');
my $log = $relay->log_content;
like($log, qr/no completed snapshot is recorded for it/, 'second run: the missing "complete" record is noticed');
like($log, qr/dropping slot "snap_slot" to take a new snapshot/, 'second run: the slot is dropped');
my $cp2 = ($log =~ /created replication slot "snap_slot", consistent point (\S+?),/)[0];
ok(defined $cp2, 'second run: the slot is created again');
like($log, qr/snapshot at \Q$cp2\E/, 'second run: a new snapshot at the new consistent point');

# a change after the second snapshot, then wait for it
$node->safe_psql('snapdb', 'UPDATE big SET n = 3 WHERE id = 1');
$endpos = $node->safe_psql('snapdb', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_for_confirmed($node, 'snap_slot', $endpos), 'second run streams past the snapshot');
is($relay->stop, 0, 'second run exits 0 on SIGTERM');
{
	# JSON::PP is too slow for 80,000 events: the values of this table are
	# plain, so "after" is matched with a regular expression (field order is
	# fixed, README "Output format"); anything that does not match counts as
	# a difference.
	my @msgs = consume($bs, 'snap.public.big');
	my $last = last_by_key(\@msgs);
	my %kafka;
	for my $k (keys %$last)
	{
		$kafka{$k} = $last->{$k} =~ /"after":\{"id":(\d+),"v":"([^"\\]*)","n":(-?\d+)\},/ ? "$1|$2|$3" : $last->{$k};
	}
	my %db = map { my ($id) = split /\|/; ("{\"id\":$id}" => $_) }
	  split /\n/, $node->safe_psql('snapdb', 'SELECT id, v, n FROM big');
	my %deleted = map { ("{\"id\":$_}" => 1) }
	  split /\n/, $node->safe_psql('snapdb', 'SELECT g FROM generate_series(8, 40000, 1000) g');
	my @missing = grep { !exists $kafka{$_} } sort keys %db;
	my @extra = grep { !exists $db{$_} && !$deleted{$_} } sort keys %kafka;
	my @diff = grep { exists $kafka{$_} && $kafka{$_} ne $db{$_} } sort keys %db;
	ok(!@missing && !@extra && !@diff,
		"Kafka's last record per key equals the table (" . scalar(keys %db) . " rows; rows deleted while the relay was down aside)")
	  or diag("missing " . scalar(@missing) . " (@missing[0 .. ($#missing < 4 ? $#missing : 4)]), extra "
		  . scalar(@extra) . " (@extra[0 .. ($#extra < 4 ? $#extra : 4)]), different " . scalar(@diff) . "\n"
		  . join("\n", map { "$_: kafka $kafka{$_} db $db{$_}" } @diff[ 0 .. ($#diff < 4 ? $#diff : 4) ]));
	# Rows that the aborted snapshot sent and that were deleted before the new
	# snapshot: nothing in the new snapshot says they are gone, so their last
	# record is still the aborted snapshot's (documented in the README,
	# "Delivery guarantees").  What a consumer needs to discard them: that
	# last record is a snapshot read of the aborted snapshot (event_id and
	# lsn of the old consistent point), older than the completed snapshot
	# that the state topic names.
	my @deleted_sent = grep { $partial{$_} } sort keys %deleted;
	ok(@deleted_sent > 0, 'some deleted rows had been sent by the aborted snapshot (' . scalar(@deleted_sent) . ')');
	my @stale = grep { exists $last->{$_} } sort keys %deleted;
	my @stale_bad = grep {
		$last->{$_} !~ /"op":"r".*"lsn":"\Q$cp1\E","snapshot":true\}$/
	} @stale;
	ok(!@stale_bad, 'rows deleted while the relay was down mid-snapshot are left only as records of the aborted snapshot ('
		  . scalar(@stale) . " of them, all with lsn $cp1, not $cp2)")
	  or diag("not from the aborted snapshot: @stale_bad[0 .. ($#stale_bad < 4 ? $#stale_bad : 4)]");
	isnt($cp2, $cp1, 'the two snapshots have different consistent points');
	my $r2 = grep { ($_->{headers}{op} // '') eq 'r' && ($_->{headers}{event_id} // '') =~ m{^\Q$cp2\E/} } @msgs;
	is($r2, $node->safe_psql('snapdb', 'SELECT count(*) FROM big'),
		'the new snapshot has one row per row of the table');

	my @st = grep { ($_->{key} // '') eq $state_key } consume($bs, 'snap.__state');
	my $v = @st ? $json->decode($st[-1]{value}) : {};
	is($v->{snapshot}, 'complete', 'state topic: the last record for the slot says complete');
	is($v->{consistent_point}, $cp2, 'state topic: at the new consistent point');
}

is($broker->stop, 0, 'broker exits 0 on SIGTERM');
done_testing();
