# test/tap/114_kafka_relay_crash.pl: kill -9 of the relay against a real Kafka 4.4 broker
# (1-node KRaft cluster), while it streams and while it takes the snapshot; after a
# restart, the last record per key equals the table.
#
# (a) While streaming: two pgbench clients commit transactions touching three tables
#     (upserts, deletes, primary-key changes).  Twice, once the relay has confirmed some
#     of their work, it is killed with SIGKILL; the writers go on while it is down; a new
#     relay starts, takes no new snapshot and streams on.  Then the writers stop and the
#     relay confirms the end position.  An audit slot (cdc_relay plugin, created before
#     the relay's slot) is the independent record: every change committed after the
#     consistent point is in Kafka byte for byte, copies of replayed events are identical,
#     nothing else is there; per key, Kafka order is commit order except replays; the
#     last record per key equals each table.
# (b) During the snapshot: a 60,000-row table, written to by pgbench all along, and a
#     relay slowed down by its producer settings (one message per batch, a small queue)
#     so that the snapshot takes seconds; it is killed with SIGKILL once rows reach Kafka
#     and before "snapshot complete".  The state topic then has no "complete" record for
#     the slot.  The next start drops the slot, takes a new snapshot, and streams; after
#     the writers stop and the end position is confirmed: per key, the aborted snapshot's
#     row (if any) comes before the new snapshot's, then changes in commit order; and
#     the last record per key equals the table, except for rows that the aborted
#     snapshot sent and that were deleted before the new one (README "Delivery
#     guarantees": nothing says they are gone; their last record is the aborted
#     snapshot's read, which a consumer recognises by its consistent point).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time);
use RelayTest;
use KafkaCluster;

my $t_start = time();
my $json = JSON::PP->new->canonical;
my $node = logical_node('kcrash', 'max_connections = 40');
my $k = KafkaCluster->start(nodes => 1);
my $prefix = "kcrash$$";
my $snap_prefix = "ksnap$$";
my %tables = (
	accounts => [ 'accounts', ['id'] ],
	lines => [ 'lines', [ 'order_id', 'line_no' ] ],
	moves => [ 'moves', ['id'] ]);
my %compact = (config => { 'cleanup.policy' => 'compact' });
$k->create_topics((map { [ "$prefix.public.$_", partitions => 3, %compact ] } sort keys %tables),
	[ "$prefix.__state", %compact ],
	[ "$snap_prefix.public.big", partitions => 3, %compact ],
	[ "$snap_prefix.__state", %compact ]);
note(sprintf('Kafka started and topics created in %.1f s', time() - $t_start));

sub sql { return $node->safe_psql($_[1] // 'postgres', $_[0]); }
sub insert_lsn { return RelayTest::insert_lsn($node); }
sub wal_grew { return RelayTest::wal_grew($node, @_); }

# writers($db, $script, @pgbench_options): pgbench clients in the background
sub writers
{
	my ($db, $script, @opt) = @_;
	my $file = PostgreSQL::Test::Utils::tempdir() . "/writer_$db.sql";
	PostgreSQL::Test::Utils::append_to_file($file, $script);
	return start_process(
		[ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', '900', '--max-tries', '20', @opt, '-f', $file,
		  $node->connstr($db) ],
		name => "writers_$db");
}

# ---- (a) kill -9 while streaming ------------------------------------------------------------
my %shop = (accounts => 3000, orders => 750, moves => 2000);
sql('CREATE EXTENSION cdc_relay');
shop_tables($node, 'postgres', %shop);
sql(q{SELECT pg_create_logical_replication_slot('audit', 'cdc_relay')});

my @args = ('--topic-prefix', $prefix);
my $relay = start_relay($node, $k, @args);
ok($relay->wait_for_log(qr/streaming from slot "cdc_relay" into Kafka/), '(a) snapshot taken, relay streams')
  or BAIL_OUT('relay did not start');
my ($cp) = $relay->log_content =~ /created replication slot "cdc_relay", consistent point (\S+?),/;

my $writers = shop_writers($node, 'postgres', %shop, pgbench => [ '-T', '900', '-R', '300' ]);

for my $round (1, 2)
{
	my $from = insert_lsn();
	ok(wait_until(sub { my $c = confirmed_flush($node, 'cdc_relay'); lsn_cmp($c, $from) > 0 && wal_grew($from, 300000) },
			'the relay to confirm the writers\' work'), "(a) round $round: the relay confirms while the writers run");
	ok($relay->kill('KILL'), "(a) round $round: kill -9 the relay while streaming");
	is($relay->finish, 128 + 9, "(a) round $round: the relay died of SIGKILL");
	my $down = insert_lsn();
	ok(wait_until(sub { wal_grew($down, 300000) }, 'the writers to go on'), "(a) round $round: writers commit while it is down");
	$relay = start_relay($node, $k, @args);
	ok($relay->wait_for_log(qr/streaming from slot "cdc_relay" into Kafka/), "(a) round $round: a new relay streams");
	unlike($relay->log_content, qr/snapshot at|created replication slot|dropping slot/, "(a) round $round: no new snapshot");
}
my $after = insert_lsn();
ok(wait_until(sub { wal_grew($after, 300000) }, 'the writers to go on'), '(a) writers commit after the restarts');
ok($writers->alive, '(a) the writers ran all along');
$writers->kill('TERM');
$writers->finish;
unlike($writers->log_content, qr/aborted|ERROR/, '(a) no pgbench client aborted');
my $endpos = insert_lsn();
ok(wait_for_confirmed($node, 'cdc_relay', $endpos), "(a) confirmed_flush_lsn reaches the end ($endpos)");
is($relay->stop, 0, '(a) relay exits 0 on SIGTERM');
{
	my ($msgs, $all) = consume_tables($k, $prefix, sort keys %tables);
	my %msgs = %$msgs;
	my $st = is_delivered($node, 'audit', $cp, $all, prefix => $prefix,
		name => '(a) every change committed after the consistent point is in Kafka as the plugin wrote it, and nothing else');
	note("(a) $st->{changes} changes, $st->{copies} copies (replays) in Kafka");
	ok($st->{changes} > 3000, "(a) the writers committed many changes ($st->{changes})");
	for my $t (sort keys %tables)
	{
		my ($errors, $st) = check_key_order($msgs{$t}, cp => $cp);
		is(scalar(@$errors), 0, "(a) $t: per-key order is commit order (steps back only for replays), tombstones after deletes")
		  or diag(join("\n", @$errors[ 0 .. ($#$errors < 9 ? $#$errors : 9) ]));
		note("(a) $t: " . join(', ', map { "$_ $st->{$_}" } sort keys %$st));
		compare_rows("(a) $t", kafka_rows($msgs{$t}), table_rows($node, @{ $tables{$t} }));
	}
	sql("SELECT pg_drop_replication_slot('audit')");
}
note(sprintf('(a) done at %.0f s', time() - $t_start));

# ---- (b) kill -9 during the snapshot ------------------------------------------------------------
sql('CREATE DATABASE snapdb');
sql(q{
CREATE EXTENSION cdc_relay;
CREATE TABLE big (id int PRIMARY KEY, v text NOT NULL, n int NOT NULL);
INSERT INTO big SELECT g, 'value ' || g, 0 FROM generate_series(1, 60000) g;
ANALYZE big;
}, 'snapdb');
my $snap_writers = writers('snapdb', q{
\set a random(1, 62000)
\set b random(1, 62000)
\set op random(1, 10)
BEGIN;
INSERT INTO big VALUES (:a, 'w', 1) ON CONFLICT (id) DO UPDATE SET n = big.n + 1, v = 'u' || (big.n + 1);
\if :op <= 4
DELETE FROM big WHERE id = :b;
\endif
COMMIT;
}, '-R', '200');

my @snap_args = ({ dbname => 'snapdb' }, '-S', 'snap_slot', '--topic-prefix', $snap_prefix);
my $sysid = sql('SELECT system_identifier FROM pg_control_system()');
my $state_key = "$sysid/snapdb/snap_slot";
$relay = start_relay($node, $k, @snap_args, '-X', 'batch.num.messages=1', '-X', 'queue.buffering.max.messages=1000');
ok($relay->wait_for_log(qr/snapshot at /), '(b) the snapshot starts');
my $sent = 0;
ok(wait_until(sub {
	my $o = $k->end_offsets("$snap_prefix.public.big");
	$sent = 0;
	$sent += $_ for values %$o;
	$sent >= 10000 }, '10,000 snapshot rows in Kafka'), '(b) snapshot rows reach Kafka');
ok($relay->kill('KILL'), '(b) kill -9 the relay during the snapshot');
is($relay->finish, 128 + 9, '(b) the relay died of SIGKILL');
unlike($relay->log_content, qr/snapshot complete/, '(b) the snapshot had not completed');
my ($cp1) = $relay->log_content =~ /created replication slot "snap_slot", consistent point (\S+?),/;
ok(defined $cp1, '(b) the slot was created');
{
	my @st = grep { ($_->{key} // '') eq $state_key } consume($k, "$snap_prefix.__state");
	ok(!(grep { $json->decode($_->{value})->{snapshot} eq 'complete' } @st),
		'(b) the state topic has no "complete" record for the slot');
	my @rows = grep { ($_->{headers}{op} // '') eq 'r' } consume($k, "$snap_prefix.public.big");
	ok(@rows > 0 && @rows < 60000, '(b) part of the snapshot was in Kafka (' . scalar(@rows) . ' rows)');
}
my $down = insert_lsn();
ok(wait_until(sub { wal_grew($down, 100000) }, 'the writers to go on'), '(b) writers commit while the relay is down');

$relay = start_relay($node, $k, @snap_args);
ok($relay->wait_for_log(qr/streaming from slot "snap_slot" into Kafka/), '(b) the next start takes a new snapshot and streams');
my $log = $relay->log_content;
like($log, qr/dropping slot "snap_slot" to take a new snapshot/, '(b) ... after dropping the slot');
my ($cp2) = $log =~ /created replication slot "snap_slot", consistent point (\S+?),/;
ok(defined $cp2 && $cp2 ne $cp1, '(b) ... at a new consistent point (' . ($cp2 // 'none') . ", was $cp1)");
$after = insert_lsn();
ok(wait_until(sub { wal_grew($after, 200000) }, 'the writers to go on'), '(b) writers commit while it streams');
ok($snap_writers->alive, '(b) the writers ran all along');
$snap_writers->kill('TERM');
$snap_writers->finish;
unlike($snap_writers->log_content, qr/aborted|ERROR/, '(b) no pgbench client aborted');
$endpos = insert_lsn();
ok(wait_for_confirmed($node, 'snap_slot', $endpos), "(b) confirmed_flush_lsn reaches the end ($endpos)");
is($relay->stop, 0, '(b) relay exits 0 on SIGTERM');
{
	my @msgs = consume($k, "$snap_prefix.public.big");
	my ($errors, $st) = check_key_order(\@msgs, cp => $cp2, aborted => [$cp1]);
	is(scalar(@$errors), 0, '(b) per key: the aborted snapshot\'s row, the new one\'s, then changes in commit order')
	  or diag(join("\n", @$errors[ 0 .. ($#$errors < 9 ? $#$errors : 9) ]));
	note('(b) ' . join(', ', map { "$_ $st->{$_}" } sort keys %$st));
	my $rows = table_rows($node, 'big', ['id'], dbname => 'snapdb');
	my $last = last_by_key(\@msgs);
	# rows of the aborted snapshot deleted before the new one: left as that read
	my %stale = map { ($_ => 1) } grep { !exists $rows->{ RelayTest::canonical_key($_) }
		  && $last->{$_} =~ /^\{"op":"r",.*"lsn":"\Q$cp1\E","snapshot":true\}$/ } keys %$last;
	note('(b) ' . scalar(keys %stale) . " rows of the aborted snapshot deleted before the new one (last record: the read at $cp1)");
	compare_rows('(b) big (those rows aside)', kafka_rows([ grep { !defined $_->{key} || !$stale{ $_->{key} } } @msgs ]),
		$rows);
	my $r2 = grep { ($_->{headers}{op} // '') eq 'r' && ($_->{headers}{event_id} // '') =~ m{^\Q$cp2\E/} } @msgs;
	ok($r2 > 50000, "(b) the new snapshot sent $r2 rows");
	my @st = grep { ($_->{key} // '') eq $state_key } consume($k, "$snap_prefix.__state");
	my $v = @st ? $json->decode($st[-1]{value}) : {};
	is($v->{snapshot} . ' ' . $v->{consistent_point}, "complete $cp2",
		'(b) the state topic: the last record for the slot is complete, at the new consistent point');
}

$k->stop;
$node->stop;
diag(sprintf('114_kafka_relay_crash: %.0f s', time() - $t_start));
done_testing();
