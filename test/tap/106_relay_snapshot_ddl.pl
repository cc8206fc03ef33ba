# test/tap/106_relay_snapshot_ddl.pl: the initial snapshot under concurrent DDL.
#
# The relay reads every table inside the snapshot the slot exported.  A table
# rewritten (ALTER TABLE ... TYPE, TRUNCATE, VACUUM FULL, CLUSTER) after the
# export has a new relfilenode whose rows that snapshot cannot see: read then,
# it comes out empty.  The relay locks every listed table ACCESS SHARE right
# after listing them, in a transaction kept open until the snapshot is over,
# and compares each table's relfilenode in the snapshot with the current one.
#
#  (a) DDL during the snapshot waits for it.  Tables big (400,000 rows, read
#      first with --snapshot-jobs 1) and victim (2,000 rows).  Once the relay
#      logged "snapshot at", Kafka refuses writes with a retriable error (so
#      the snapshot cannot complete) and a background psql runs
#      ALTER TABLE victim ALTER COLUMN v TYPE bigint: it must wait (pg_locks)
#      for a lock held by the relay while the snapshot has not completed.
#      Kafka then takes writes again: the snapshot completes, the ALTER ends,
#      rows written afterwards stream, and Kafka's last record per key of
#      victim equals the table (all 2,000 snapshot rows are there).  Before
#      the fix the ALTER did not wait and victim was read as 0 rows.
#  (b) A rewrite committed between the export and the lock.  Kafka refuses
#      writes from the start, so that after "created replication slot" the
#      relay waits for its "started" state record and has not looked at any
#      table; then ALTER TABLE victim ALTER COLUMN v TYPE bigint commits and
#      Kafka takes writes again.  The relay must log
#      "table public.victim was rewritten or truncated ... after the snapshot
#      was exported" and "taking the snapshot again from a new slot (attempt
#      2 of 3)", read nothing from the first snapshot, create the slot anew
#      (one slot left, the second consistent point recorded as complete), and
#      Kafka must hold every row of victim and of the untouched table other,
#      each once, as snapshot rows at the second consistent point.  Before the
#      fix: "snapshot complete" with 0 rows of victim.
#      (A session holding LOCK TABLE victim IN ACCESS EXCLUSIVE MODE cannot
#      set this up: with wal_level=logical that lock is WAL-logged for hot
#      standby, which assigns the session a transaction id before it even
#      waits, and slot creation waits for every transaction with an id.)
#  (c) A lock wait, and a DDL queued behind the snapshot's lock.  Again with
#      Kafka refusing writes, after "created replication slot" a session takes
#      LOCK TABLE victim IN ACCESS EXCLUSIVE MODE; Kafka takes writes again and
#      the relay's LOCK waits: after 5 s it must log that it waits for a lock
#      on table public.victim held by that session's server process.  Then an
#      ALTER TABLE victim ... TYPE queues behind the relay's lock request and
#      the session rolls back: the relay gets its lock, the ALTER keeps
#      waiting, so the second snapshot job (--snapshot-jobs 2), whose NOWAIT
#      lock conflicts with the queued ALTER, must step aside with a warning
#      instead of queueing behind it (which would deadlock: the ALTER waits for
#      the relay's first connection, which waits for the job).  The first
#      connection reads both tables, the snapshot completes (no retake: nothing
#      was rewritten), the ALTER ends after it, and Kafka equals the tables.
#
# Kafka writes are refused with NOT_ENOUGH_REPLICAS (retriable: librdkafka
# retries until the error is cleared).  The relays run with one request in
# flight per connection, so that an injected error cannot leave a sequence
# gap that the test broker would accept (see 104_relay_faults.pl).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use RelayTest;

my $json = JSON::PP->new->canonical;
my $node = logical_node('snapddl', 'max_connections = 40');
my @relay_opts = ('--topic-prefix', 'cdc', '-X', 'max.in.flight.requests.per.connection=1');

# The relay's connection string: its sessions are told apart by their
# application_name (the test's own psql sessions get the script's name).
sub relay_conn
{
	my ($db) = @_;
	return $node->connstr($db) . ' application_name=ddl_relay';
}

sub sql
{
	my ($db, $q) = @_;
	return $node->safe_psql($db, $q);
}

# {id => v} of a table, and of Kafka's compacted view of its topic (the
# events' "after").
sub table_rows
{
	my ($db, $table) = @_;
	my %rows = map { split /\|/ } split /\n/, sql($db, "SELECT id, v FROM $table");
	return \%rows;
}

sub kafka_rows
{
	my ($msgs) = @_;
	my $last = last_by_key($msgs);
	my %rows;
	for my $k (keys %$last)
	{
		my $after = $json->decode($last->{$k})->{after};
		$rows{ $json->decode($k)->{id} } = $after->{v};
	}
	return \%rows;
}

# Kafka's compacted view of $topic equals the table, with $n rows.
sub kafka_equals_table
{
	my ($name, $bs, $db, $table, $topic, $n) = @_;
	my $db_rows = table_rows($db, $table);
	my $kafka = kafka_rows([ consume($bs, $topic) ]);
	is(scalar(keys %$db_rows), $n, "$name: table $table has $n rows");
	my @missing = grep { !exists $kafka->{$_} } sort { $a <=> $b } keys %$db_rows;
	my @extra = grep { !exists $db_rows->{$_} } sort { $a <=> $b } keys %$kafka;
	my @diff = grep { exists $kafka->{$_} && $kafka->{$_} ne $db_rows->{$_} } sort { $a <=> $b } keys %$db_rows;
	ok(!@missing && !@extra && !@diff,
		"$name: Kafka's last record per key of $topic equals table $table")
	  or diag(scalar(@missing) . " keys missing (first: @missing[0 .. ($#missing < 4 ? $#missing : 4)]), "
		  . scalar(@extra) . " extra, " . scalar(@diff) . " different"
		  . (@diff ? " (id $diff[0]: kafka $kafka->{$diff[0]}, table $db_rows->{$diff[0]})" : ''));
}

# Snapshot rows (op r) of a topic: count, and the set of their commit_lsn headers.
sub snapshot_rows
{
	my ($bs, $topic) = @_;
	my @r = grep { ($_->{headers}{op} // '') eq 'r' } consume($bs, $topic);
	my %lsn = map { ($_->{headers}{commit_lsn} // 'none') => 1 } @r;
	return (scalar(@r), join(',', sort keys %lsn));
}

# Is an ALTER TABLE on $table in $db waiting for a lock (and who holds it)?
sub alter_waiting_for
{
	my ($db, $table) = @_;
	return sql($db, qq{
SELECT coalesce(string_agg(DISTINCT b.application_name, ','), '')
  FROM pg_locks l
  JOIN pg_stat_activity w ON w.pid = l.pid
  LEFT JOIN pg_stat_activity b ON b.pid = ANY (pg_blocking_pids(l.pid))
 WHERE l.relation = '$table'::regclass AND NOT l.granted AND l.mode = 'AccessExclusiveLock'
   AND w.query LIKE 'ALTER TABLE%'});
}

sub column_type
{
	my ($db, $table, $col) = @_;
	return sql($db, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
		  . " WHERE attrelid = '$table'::regclass AND attname = '$col'");
}

# ---- (a) DDL during the snapshot waits for it ------------------------------------
sql('postgres', q{
CREATE EXTENSION cdc_relay;
CREATE TABLE big (id int PRIMARY KEY, pad text NOT NULL);
INSERT INTO big SELECT g, 'row ' || g FROM generate_series(1, 400000) g;
CREATE TABLE victim (id int PRIMARY KEY, v int NOT NULL);
INSERT INTO victim SELECT g, g * 7 FROM generate_series(1, 2000) g;
ANALYZE big, victim;
});
{
	my $broker = start_broker();
	my $relay = start_relay(relay_conn('postgres'), $broker, @relay_opts, '--slot', 'ddl_a', '--snapshot-jobs', '1');
	ok($relay->wait_for_log(qr/snapshot at \S+: 2 tables, 1 parallel jobs/), '(a) the snapshot starts')
	  or BAIL_OUT('(a) no snapshot');
	like($broker->command('error produce NOT_ENOUGH_REPLICAS 100000'), qr/^ok/,
		'(a) Kafka refuses writes for now (retriable), so the snapshot cannot complete');
	my $alter = start_process(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
		  '-c', 'ALTER TABLE victim ALTER COLUMN v TYPE bigint' ],
		name => 'alter_a');
	my $blockers = '';
	wait_until(sub { $blockers = alter_waiting_for('postgres', 'victim'); $blockers ne '' || !$alter->alive },
		'(a) the ALTER to wait for a lock, or to end');
	like($blockers, qr/\bddl_relay\b/, '(a) ALTER TABLE victim ... TYPE waits for a lock held by the relay')
	  or diag('ALTER ' . ($alter->alive ? 'still running' : 'ended with status ' . $alter->finish));
	unlike($relay->log_content, qr/snapshot complete/, '(a) ... while the snapshot has not completed');
	like($broker->command('clear produce'), qr/^ok/, '(a) Kafka takes writes again');
	ok($relay->wait_for_log(qr/streaming from slot "ddl_a" into Kafka/), '(a) the snapshot completes, the relay streams');
	is($alter->finish, 0, '(a) the ALTER completed after the snapshot');
	is(column_type('postgres', 'victim', 'v'), 'bigint', '(a) victim.v is bigint now');
	like($relay->log_content, qr/snapshot: public\.victim done, 2000 rows/, '(a) the relay read 2000 rows of victim');
	sql('postgres', q{
INSERT INTO victim VALUES (2001, 5000000000);
UPDATE victim SET v = v + 1 WHERE id <= 10;
DELETE FROM victim WHERE id = 20;
});
	my $end = sql('postgres', 'SELECT pg_current_wal_insert_lsn()');
	ok(wait_for_confirmed($node, 'ddl_a', $end), "(a) the relay confirmed the changes after the ALTER ($end)");
	is($relay->stop, 0, '(a) the relay exits 0 on SIGTERM');
	my ($n) = snapshot_rows($broker, 'cdc.public.victim');
	is($n, 2000, '(a) Kafka holds 2000 snapshot rows of victim');
	kafka_equals_table('(a)', $broker, 'postgres', 'victim', 'cdc.public.victim', 2000);
	sql('postgres', "SELECT pg_drop_replication_slot('ddl_a')");
}

# The databases of (b) and (c): victim (2,000 rows) and other (500 rows).
sub make_db
{
	my ($db) = @_;
	sql('postgres', "CREATE DATABASE $db");
	sql($db, q{
CREATE EXTENSION cdc_relay;
CREATE TABLE victim (id int PRIMARY KEY, v int NOT NULL);
INSERT INTO victim SELECT g, g * 3 FROM generate_series(1, 2000) g;
CREATE TABLE other (id int PRIMARY KEY, v int NOT NULL);
INSERT INTO other SELECT g, -g FROM generate_series(1, 500) g;
ANALYZE victim, other;
});
}

# ---- (b) a rewrite committed between the export and the lock -----------------------
make_db('db_b');
{
	my $broker = start_broker();
	like($broker->command('error produce NOT_ENOUGH_REPLICAS 100000'), qr/^ok/,
		'(b) Kafka refuses writes for now (retriable)');
	my $relay = start_relay(relay_conn('db_b'), $broker, @relay_opts, '--slot', 'ddl_b',
		'--snapshot-jobs', '2');
	ok($relay->wait_for_log(qr/created replication slot "ddl_b"/), '(b) the relay created its slot')
	  or BAIL_OUT('(b) no slot');
	# the relay now waits for Kafka to take its "started" state record
	sql('db_b', 'ALTER TABLE victim ALTER COLUMN v TYPE bigint');
	unlike($relay->log_content, qr/snapshot at/,
		'(b) the rewrite committed after the export, before the relay looked at any table');
	like($broker->command('clear produce'), qr/^ok/, '(b) Kafka takes writes again');
	ok($relay->wait_for_log(qr/snapshot complete|snapshot failed|gave up/), '(b) the snapshot ends');
	ok($relay->wait_for_log(qr/streaming from slot "ddl_b" into Kafka/), '(b) the relay streams');
	my $log = $relay->log_content;
	like($log, qr/WARNING table public\.victim was rewritten or truncated \(ALTER TABLE \.\.\. TYPE, TRUNCATE, VACUUM FULL, CLUSTER\) after the snapshot was exported/,
		'(b) the rewrite is reported');
	unlike($log, qr/table public\.other was/, '(b) the untouched table is not reported');
	like($log, qr/taking the snapshot again from a new slot \(attempt 2 of 3\)/, '(b) the snapshot is taken again');
	my @cps = $log =~ /created replication slot "ddl_b", consistent point (\S+?),/g;
	is(scalar(@cps), 2, '(b) the slot was created twice');
	my @read_at = $log =~ /snapshot at (\S+?):/g;
	is_deeply(\@read_at, [ $cps[1] // 'none' ], '(b) only the second snapshot was read');
	is(sql('postgres', "SELECT string_agg(slot_name, ',') FROM pg_replication_slots WHERE database = 'db_b'"),
		'ddl_b', '(b) one slot left: the first one is gone');
	my $state = last_by_key([ consume($broker, 'cdc.__state') ]);
	my @complete = grep { $_->{slot} eq 'ddl_b' && $_->{snapshot} eq 'complete' } map { $json->decode($_) } values %$state;
	is(scalar(@complete) && $complete[0]{consistent_point}, $cps[1] // 'none',
		'(b) the state topic records the second consistent point as complete');

	sql('db_b', 'INSERT INTO victim VALUES (2001, 5000000000)');
	my $end = sql('db_b', 'SELECT pg_current_wal_insert_lsn()');
	ok(wait_for_confirmed($node, 'ddl_b', $end), "(b) the relay confirmed a later insert ($end)");
	is($relay->stop, 0, '(b) the relay exits 0 on SIGTERM');
	for my $t ([ 'victim', 2000 ], [ 'other', 500 ])
	{
		my ($n, $lsns) = snapshot_rows($broker, "cdc.public.$t->[0]");
		is($n, $t->[1], "(b) Kafka holds each of the $t->[1] rows of $t->[0] once as a snapshot row");
		is($lsns, $cps[1] // 'none', "(b) ... all at the second consistent point");
	}
	kafka_equals_table('(b)', $broker, 'db_b', 'victim', 'cdc.public.victim', 2001);
	kafka_equals_table('(b)', $broker, 'db_b', 'other', 'cdc.public.other', 500);
	sql('postgres', "SELECT pg_drop_replication_slot('ddl_b')");
}

# ---- (c) a lock wait, and a DDL queued behind the snapshot's lock ------------------
make_db('db_c');
{
	my $broker = start_broker();
	like($broker->command('error produce NOT_ENOUGH_REPLICAS 100000'), qr/^ok/,
		'(c) Kafka refuses writes for now (retriable)');
	my $relay = start_relay(relay_conn('db_c'), $broker, @relay_opts, '--slot', 'ddl_c',
		'--snapshot-jobs', '2');
	ok($relay->wait_for_log(qr/created replication slot "ddl_c"/), '(c) the relay created its slot')
	  or BAIL_OUT('(c) no slot');
	my $holder = $node->background_psql('db_c');
	my $holder_pid = $holder->query_safe('SELECT pg_backend_pid()');
	$holder->query_safe('BEGIN; LOCK TABLE victim IN ACCESS EXCLUSIVE MODE');
	like($broker->command('clear produce'), qr/^ok/, '(c) Kafka takes writes again');
	ok($relay->wait_for_log(
			qr/WARNING snapshot: waiting \d+ s for a lock on table public\.victim: server process $holder_pid /, 60),
		"(c) the relay logs that it waits for a lock on public.victim held by server process $holder_pid");
	unlike($relay->log_content, qr/snapshot at/, '(c) ... and reads nothing meanwhile');
	like($broker->command('error produce NOT_ENOUGH_REPLICAS 100000'), qr/^ok/,
		'(c) Kafka refuses writes again, so that the snapshot cannot complete');

	my $alter = start_process(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('db_c'),
		  '-c', 'ALTER TABLE victim ALTER COLUMN v TYPE bigint' ],
		name => 'alter_c');
	ok(wait_until(sub { alter_waiting_for('db_c', 'victim') ne '' || !$alter->alive }, '(c) the ALTER to queue')
		  && $alter->alive, '(c) an ALTER TABLE victim ... TYPE queues behind the lock');
	$holder->query_safe('ROLLBACK');
	$holder->quit;
	ok($relay->wait_for_log(qr/snapshot at \S+: 2 tables, 1 parallel jobs/),
		'(c) the relay got its lock: the snapshot runs with 1 job');
	like($relay->log_content,
		qr/WARNING snapshot: job 2 of 2 reads nothing: could not obtain lock on relation "public\.victim"/,
		'(c) the second job, whose lock would queue behind the ALTER, stepped aside');
	my $blockers = '';
	wait_until(sub { $blockers = alter_waiting_for('db_c', 'victim'); $blockers =~ /\bddl_relay\b/ || !$alter->alive },
		'(c) the ALTER to wait for the relay');
	like($blockers, qr/\bddl_relay\b/, '(c) the ALTER waits for a lock held by the relay');
	unlike($relay->log_content, qr/snapshot complete/, '(c) ... while the snapshot has not completed');
	like($broker->command('clear produce'), qr/^ok/, '(c) Kafka takes writes again');
	ok($relay->wait_for_log(qr/streaming from slot "ddl_c" into Kafka/), '(c) the snapshot completes (no deadlock)');
	unlike($relay->log_content, qr/taking the snapshot again|was rewritten/, '(c) no retake: nothing was rewritten');
	is($alter->finish, 0, '(c) the ALTER completed after the snapshot');
	is(column_type('db_c', 'victim', 'v'), 'bigint', '(c) victim.v is bigint now');

	sql('db_c', 'UPDATE victim SET v = v * 1000000000 WHERE id = 5');
	my $end = sql('db_c', 'SELECT pg_current_wal_insert_lsn()');
	ok(wait_for_confirmed($node, 'ddl_c', $end), "(c) the relay confirmed a later update ($end)");
	is($relay->stop, 0, '(c) the relay exits 0 on SIGTERM');
	my ($n) = snapshot_rows($broker, 'cdc.public.victim');
	is($n, 2000, '(c) Kafka holds 2000 snapshot rows of victim');
	kafka_equals_table('(c)', $broker, 'db_c', 'victim', 'cdc.public.victim', 2000);
	kafka_equals_table('(c)', $broker, 'db_c', 'other', 'cdc.public.other', 500);
}

$node->stop;
done_testing();
