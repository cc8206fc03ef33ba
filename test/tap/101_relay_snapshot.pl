# test/tap/101_relay_snapshot.pl: the relay's initial snapshot under concurrent
# writes, then streaming, then a restart that must not snapshot again.
#
# Tables (about 35,000 rows before the relay starts):
#   accounts          int primary key
#   lines             composite primary key (order_id, line_no)
#   "Sales"."odd name.x"  names that need topic encoding (cdc.Sales.odd-20name-2ex)
#   nopk              no primary key: null Kafka keys, insert-only
#   excluded          written to, but left out with --exclude-tables
#   trunc_me          truncated once while the relay streams
#   static_rows       never written: its snapshot rows must be exactly the table
#   pkmove            a primary key update after the restart
# Two pgbench clients commit many small random transactions (inserts, upserts,
# deletes on random keys) from before the relay starts until after its snapshot
# (--snapshot-jobs 3) completed; then the writers stop, the position
# pg_current_wal_insert_lsn() is recorded and we wait (polling) until the slot's
# confirmed_flush_lsn reached it, which the relay reports only for transactions
# Kafka acknowledged.  SIGTERM must end the relay with exit 0.  Then kcat reads
# every topic and:
#   - the last record per key (tombstone => deleted) of each keyed table's topic
#     equals the table: same key set, and the event's "after" equals the row as
#     row_to_json gives it; for nopk the set of rows equals the table's;
#   - the excluded table has no topic; topic names are encoded;
#   - snapshot rows are op "r" events with "snapshot":true, lsn = the slot's
#     consistent point (from the log), and headers op=r, snapshot=true;
#   - per key, Kafka order is commit order: the snapshot row first, then change
#     events with commit_lsn >= the consistent point and (commit_lsn, seq)
#     increasing; a step back is allowed only for a replay (at-least-once: its
#     event_id was seen before for that key);
#   - each delete is followed, for its key, by a tombstone (null value, header
#     op=tombstone); headers agree with the event (op, commit_lsn, event_id);
#   - the TRUNCATE gave a truncate event (key: the JSON string "truncate") on
#     trunc_me's topic;
#   - the state topic holds a "complete" record for the slot at the consistent
#     point.
# A second start of the relay streams from the slot without a new snapshot (no
# "snapshot at" line), and changes made then reach Kafka.  Last, an update that
# changes a primary key must leave Kafka's compacted view equal to the table
# (the old key deleted, the new key present).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use RelayTest;

my $json = JSON::PP->new->canonical;

my $node = logical_node('snap', 'max_connections = 30');

$node->safe_psql('postgres', q{
CREATE EXTENSION cdc_relay;
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, note text);
INSERT INTO accounts SELECT g, g * 10, 'seed ' || g FROM generate_series(1, 15000) g;
CREATE TABLE lines (order_id int, line_no int, qty int NOT NULL, sku text,
                    PRIMARY KEY (order_id, line_no));
INSERT INTO lines SELECT o, l, l, 'sku-' || o || '-' || l
  FROM generate_series(1, 2500) o, generate_series(1, 4) l;
CREATE SCHEMA "Sales";
CREATE TABLE "Sales"."odd name.x" ("Id" int PRIMARY KEY, "Val" text);
INSERT INTO "Sales"."odd name.x" SELECT g, 'v' || g FROM generate_series(1, 5000) g;
CREATE TABLE nopk (a bigserial, b text);
INSERT INTO nopk (b) SELECT 'seed ' || g FROM generate_series(1, 3000) g;
CREATE TABLE excluded (id int PRIMARY KEY, v text);
INSERT INTO excluded SELECT g, 'x' FROM generate_series(1, 2000) g;
CREATE TABLE trunc_me (id int PRIMARY KEY);
INSERT INTO trunc_me SELECT generate_series(1, 10);
CREATE TABLE static_rows (id int PRIMARY KEY, t text);
INSERT INTO static_rows SELECT g, 'static ' || g FROM generate_series(1, 1000) g;
CREATE TABLE pkmove (id int PRIMARY KEY, v text);
INSERT INTO pkmove VALUES (1, 'one'), (2, 'two');
ANALYZE;
});

# Many small random transactions on random keys; about 1 in 4 deletes.
my $script = q{
\set a random(1, 16000)
\set b random(1, 16000)
\set o random(1, 2600)
\set l random(1, 4)
\set o2 random(1, 2600)
\set l2 random(1, 4)
\set s random(1, 5200)
\set s2 random(1, 5200)
\set op random(1, 12)
BEGIN;
INSERT INTO accounts VALUES (:a, :op, 'w') ON CONFLICT (id) DO UPDATE SET balance = accounts.balance + excluded.balance, note = 'u' || excluded.balance;
DELETE FROM accounts WHERE id = :b AND :op <= 3;
INSERT INTO lines VALUES (:o, :l, 1, 'w') ON CONFLICT (order_id, line_no) DO UPDATE SET qty = lines.qty + 1;
DELETE FROM lines WHERE order_id = :o2 AND line_no = :l2 AND :op <= 4;
INSERT INTO "Sales"."odd name.x" VALUES (:s, 'w') ON CONFLICT ("Id") DO UPDATE SET "Val" = left("odd name.x"."Val", 20) || '+';
DELETE FROM "Sales"."odd name.x" WHERE "Id" = :s2 AND :op = 1;
INSERT INTO nopk (b) VALUES ('w' || :a);
UPDATE excluded SET v = v || '+' WHERE id = :a % 2000 + 1;
COMMIT;
};
my $script_file = PostgreSQL::Test::Utils::tempdir() . '/writer.sql';
PostgreSQL::Test::Utils::append_to_file($script_file, $script);

my $broker = start_broker();
my $bs = $broker->{bootstrap};

my $writers = start_process(
	[ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', '600', '-f', $script_file,
	  $node->connstr('postgres') ],
	name => 'writers');
# the writers are committing before the relay starts
my $lsn0 = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_until(sub {
	$node->safe_psql('postgres', "SELECT pg_current_wal_insert_lsn() - '$lsn0' > 100000") eq 't' },
	'writers to write WAL'), 'writers are running');

my $relay = start_relay($node, $broker, '--snapshot-jobs', '3',
	'--exclude-tables', 'public.excluded');
ok($relay->wait_for_log(qr/snapshot complete:/), 'snapshot completes while writers run')
  or BAIL_OUT('no snapshot');
ok($writers->alive, 'writers still running after the snapshot');
my ($cp) = $relay->log_content =~ /created replication slot "cdc_relay", consistent point (\S+?),/;
ok(defined $cp, "consistent point logged: " . ($cp // 'none'));
like($relay->log_content, qr/snapshot at \Q$cp\E: 7 tables, 3 parallel jobs/,
	'snapshot of the 7 captured tables with 3 jobs');

# let the writers go on streaming for a while, then stop them
my $lsn1 = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_until(sub {
	$node->safe_psql('postgres', "SELECT pg_current_wal_insert_lsn() - '$lsn1' > 300000") eq 't' },
	'writers to write after the snapshot'), 'writers wrote after the snapshot');
$writers->kill('TERM');
$writers->finish;
ok($node->safe_psql('postgres', 'SELECT count(*) FROM nopk') > 3000, 'writers committed rows');

$node->safe_psql('postgres', 'TRUNCATE trunc_me');
my $endpos = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_for_confirmed($node, 'cdc_relay', $endpos), "confirmed_flush_lsn reaches $endpos");
is($relay->stop, 0, 'relay exits 0 on SIGTERM');
like($relay->log_content, qr/streaming from slot "cdc_relay" into Kafka/, 'relay streamed after the snapshot');

# ---- topics ------------------------------------------------------------------
my @topics = topics($bs);
note "topics: @topics";
for my $t ('cdc.public.accounts', 'cdc.public.lines', 'cdc.Sales.odd-20name-2ex', 'cdc.public.nopk',
	'cdc.public.trunc_me', 'cdc.__state')
{
	ok((grep { $_ eq $t } @topics), "topic $t exists");
}
ok(!(grep { /excluded/ } @topics), 'no topic for the excluded table');

# ---- helpers ------------------------------------------------------------------
# table content as {canonical key JSON => canonical row JSON}
sub table_state
{
	my ($table, @keycols) = @_;
	my $rows = $json->decode($node->safe_psql('postgres',
		"SELECT coalesce(json_agg(t.*), '[]') FROM $table t"));
	my %s;
	for my $row (@$rows)
	{
		my %k = map { ($_ => $row->{$_}) } @keycols;
		$s{ $json->encode(\%k) } = $json->encode($row);
	}
	return \%s;
}

# Kafka's compacted view as {canonical key JSON => canonical "after" JSON}
sub kafka_state
{
	my ($msgs) = @_;
	my $last = last_by_key($msgs);
	my %s;
	for my $k (keys %$last)
	{
		my $ev = $json->decode($last->{$k});
		$s{ $json->encode($json->decode($k)) } = $json->encode($ev->{after});
	}
	return \%s;
}

sub compare_state
{
	my ($name, $kafka, $db) = @_;
	my @missing = grep { !exists $kafka->{$_} } sort keys %$db;
	my @extra = grep { !exists $db->{$_} } sort keys %$kafka;
	my @diff = grep { exists $kafka->{$_} && $kafka->{$_} ne $db->{$_} } sort keys %$db;
	ok(!@missing && !@extra && !@diff,
		"$name: Kafka's last record per key equals the table (" . scalar(keys %$db) . " rows)")
	  or diag("missing keys: @missing[0 .. ($#missing < 4 ? $#missing : 4)] ("
		  . scalar(@missing) . ")\nextra keys: @extra[0 .. ($#extra < 4 ? $#extra : 4)] ("
		  . scalar(@extra) . ")\ndifferent: "
		  . join("\n", map { "$_: kafka $kafka->{$_} db $db->{$_}" } @diff[ 0 .. ($#diff < 4 ? $#diff : 4) ])
		  . " (" . scalar(@diff) . ")");
}

# Per-key checks on one topic; returns the number of keys with both a snapshot
# row and later changes.
sub check_topic_events
{
	my ($name, $msgs, $table_header, $schema, $table) = @_;
	my @errors;
	my ($n_r, $n_change, $n_del) = (0, 0, 0);
	for my $i (0 .. $#$msgs)
	{
		my $m = $msgs->[$i];
		my $h = $m->{headers};
		next unless defined $m->{value};
		my $ev = $json->decode($m->{value});
		$m->{ev} = $ev;
		push @errors, "header op $h->{op} but event op $ev->{op}" if ($h->{op} // '') ne $ev->{op};
		push @errors, "header table $h->{table}, expected $table_header"
		  if ($h->{table} // '') ne $table_header;
		push @errors, "event on $ev->{schema}.$ev->{table} in topic for $schema.$table"
		  if $ev->{op} ne 't' && ($ev->{schema} ne $schema || $ev->{table} ne $table);
		if ($ev->{op} eq 'r')
		{
			$n_r++;
			push @errors, "snapshot event without snapshot:true" unless JSON::PP::is_bool($ev->{snapshot}) && $ev->{snapshot};
			push @errors, "snapshot event lsn $ev->{lsn} != consistent point $cp" if $ev->{lsn} ne $cp;
		}
		else
		{
			push @errors, "change event has a snapshot field" if exists $ev->{snapshot};
			push @errors, "header event_id $h->{event_id} != $ev->{commit_lsn}/$ev->{seq}"
			  if ($h->{event_id} // '') ne "$ev->{commit_lsn}/$ev->{seq}";
			$n_change++;
			$n_del++ if $ev->{op} eq 'd';
		}
	}
	# headers, snapshot rows first, per-key commit order (replays aside), tombstones
	# after deletes: RelayTest::check_key_order
	my ($key_errors, $st) = check_key_order($msgs, cp => $cp);
	push @errors, @$key_errors;
	my $both = $st->{both};
	is(scalar(@errors), 0, "$name: headers, snapshot rows, per-key commit order, tombstones after deletes")
	  or diag(join("\n", @errors[ 0 .. ($#errors < 9 ? $#errors : 9) ]));
	note "$name: $n_r snapshot rows, $n_change change events ($n_del deletes), $both keys with both";
	return ($n_r, $n_change, $both, $n_del);
}

# ---- captured keyed tables -------------------------------------------------------
my %tables = (
	accounts => [ 'accounts', 'cdc.public.accounts', 'public.accounts', 'public', 'accounts', ['id'] ],
	lines => [ 'lines', 'cdc.public.lines', 'public.lines', 'public', 'lines', [ 'order_id', 'line_no' ] ],
	odd => [ '"Sales"."odd name.x"', 'cdc.Sales.odd-20name-2ex', '"Sales"."odd name.x"', 'Sales',
		'odd name.x', ['Id'] ],);
for my $name (sort keys %tables)
{
	my ($sqlname, $topic, $hdr, $schema, $table, $keycols) = @{ $tables{$name} };
	my @msgs = consume($bs, $topic);
	my ($n_r, $n_change, $both, $n_del) = check_topic_events($name, \@msgs, $hdr, $schema, $table);
	ok($n_r > 0 && $n_change > 0, "$name: snapshot rows ($n_r) and change events ($n_change)");
	ok($both > 0, "$name: keys with a snapshot row and later changes ($both)");
	ok($n_del > 0, "$name: deletes streamed ($n_del)");
	compare_state($name, kafka_state(\@msgs), table_state($sqlname, @$keycols));
}

# ---- a table nobody writes: the snapshot alone must equal it -------------------------
{
	my @msgs = consume($bs, 'cdc.public.static_rows');
	my @r = grep { ($_->{headers}{op} // '') eq 'r' } @msgs;
	is(scalar(@r), scalar(@msgs), 'static_rows: only snapshot rows');
	my %kafka = map { $json->encode($json->decode($_->{key})) => $json->encode($json->decode($_->{value})->{after}) } @r;
	is(scalar(@r), scalar(keys %kafka), 'static_rows: one snapshot row per key');
	compare_state('static_rows (snapshot only)', \%kafka, table_state('static_rows', 'id'));
}

# ---- table without a key ------------------------------------------------------------
{
	my @msgs = consume($bs, 'cdc.public.nopk');
	ok(!(grep { defined $_->{key} } @msgs), 'nopk: every message has a null key');
	my %kafka = map { $json->encode($json->decode($_->{value})->{after}) => 1 } @msgs;
	my %db = map { $json->encode($_) => 1 }
	  @{ $json->decode($node->safe_psql('postgres', 'SELECT json_agg(t.*) FROM nopk t')) };
	is_deeply([ sort keys %kafka ], [ sort keys %db ], 'nopk: the rows in Kafka equal the table (' . scalar(keys %db) . ')');
	check_topic_events('nopk', \@msgs, 'public.nopk', 'public', 'nopk');
}

# ---- truncate ---------------------------------------------------------------------
{
	my @msgs = consume($bs, 'cdc.public.trunc_me');
	my @t = grep { ($_->{headers}{op} // '') eq 't' } @msgs;
	is(scalar(@t), 1, 'one truncate message on trunc_me\'s topic');
	if (@t)
	{
		my $ev = $json->decode($t[0]{value});
		is($t[0]{key}, '"truncate"', 'truncate message has the marker key "truncate" (a JSON string)');
		is($ev->{op}, 't', 'truncate event op "t"');
		is_deeply($ev->{tables}, [ { schema => 'public', table => 'trunc_me' } ], 'truncate event names the table');
	}
	is(scalar(grep { ($_->{headers}{op} // '') eq 'r' } @msgs), 10, 'trunc_me: 10 snapshot rows before it');
}

# ---- state topic ------------------------------------------------------------------
my $sysid = $node->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()');
{
	my @msgs = consume($bs, 'cdc.__state');
	my @mine = grep { ($_->{key} // '') eq "$sysid/postgres/cdc_relay" } @msgs;
	my @complete = grep { my $v = $json->decode($_->{value}); $v->{snapshot} eq 'complete' } @mine;
	# "complete", then one record per checkpoint of the confirmed position, each
	# carrying the snapshot's fields again (a compacted topic keeps the last)
	cmp_ok(scalar(@complete), '>=', 1, 'state topic: "complete" records for the slot');
	is(scalar(grep { $json->decode($_->{value})->{consistent_point} ne $cp } @complete), 0,
		'state records: all "complete" records name the consistent point');
	if (@complete)
	{
		my $v = $json->decode($complete[-1]{value});
		is($v->{consistent_point}, $cp, 'state record: consistent point');
		is($v->{slot}, 'cdc_relay', 'state record: slot');
		is($v->{tables}, 7, 'state record: 7 tables');
	}
	is(last_by_key(\@msgs)->{"$sysid/postgres/cdc_relay"}, $complete[-1]{value},
		'state topic: the last record for the slot is a complete one');
	my @confirmed = map { $json->decode($_->{value})->{confirmed_lsn} // '0/0' } @complete;
	my @back = grep { lsn_cmp($confirmed[$_], $confirmed[ $_ - 1 ]) < 0 } 1 .. $#confirmed;
	is(scalar(@back), 0, 'state records: the confirmed position never goes back');
	ok(lsn_cmp($confirmed[-1], $cp) >= 0 && lsn_cmp($confirmed[-1], confirmed_flush($node, 'cdc_relay')) >= 0,
		"state records: the last confirmed position ($confirmed[-1]) is at or past the consistent point and the slot's confirmed_flush_lsn");
}

# ---- restart: no new snapshot, new changes arrive ------------------------------------
my $relay2 = start_relay($node, $broker, '--snapshot-jobs', '3', '--exclude-tables', 'public.excluded');
ok($relay2->wait_for_log(qr/streaming from slot "cdc_relay" into Kafka/), 'second run streams');
$node->safe_psql('postgres', q{
INSERT INTO accounts VALUES (900001, 1, 'after restart');
DELETE FROM accounts WHERE id = 2;
UPDATE "Sales"."odd name.x" SET "Val" = 'after restart' WHERE "Id" = 3;
UPDATE pkmove SET id = 10 WHERE id = 1;
});
$endpos = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_for_confirmed($node, 'cdc_relay', $endpos), 'second run: confirmed_flush_lsn reaches the new changes');
is($relay2->stop, 0, 'second run exits 0 on SIGTERM');
unlike($relay2->log_content, qr/snapshot at|created replication slot|dropping slot/,
	'second run: no new snapshot, same slot');
for my $name ('accounts', 'odd')
{
	my ($sqlname, $topic, $hdr, $schema, $table, $keycols) = @{ $tables{$name} };
	my @msgs = consume($bs, $topic);
	check_topic_events("$name after restart", \@msgs, $hdr, $schema, $table);
	compare_state("$name after restart", kafka_state(\@msgs), table_state($sqlname, @$keycols));
	next unless $name eq 'accounts';
	ok((grep { ($_->{key} // '') eq '{"id":900001}' } @msgs), 'row inserted after the restart is in Kafka');
	is(scalar(grep { ($_->{headers}{op} // '') eq 'r' } @msgs),
		scalar(grep { ($_->{headers}{op} // '') eq 'r' && $_->{headers}{event_id} =~ m{^\Q$cp\E/} } @msgs),
		'accounts: all snapshot rows are from the first snapshot');
}

# An update of the primary key: Kafka's compacted view must forget the old key
# and hold the new one.
compare_state('pkmove (primary key updated)', kafka_state([ consume($bs, 'cdc.public.pkmove') ]),
	table_state('pkmove', 'id'));

is($broker->stop, 0, 'broker exits 0 on SIGTERM');
done_testing();
