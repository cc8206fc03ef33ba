# test/tap/107_relay_slot_safety.pl: the relay never streams from a slot it
# cannot trust, never shares a slot with another relay, and stops with the fix
# on a slot, WAL or database that is gone for good (issue 7, items 2, 3, 9 and
# the slot rule of item 7; the messages are those of the spec).
#
# Every relay run passes --topic-prefix cdc and --tables for its own table(s),
# so each case has its own slot, topic and state record.  The server logs every
# statement and replication command (PostgreSQL::Test::Cluster sets
# log_statement = all and log_replication_commands = on): "the relay created or
# dropped no slot" is read there, independently of the relay's own log.
#
# Item 7 (slot rule): a snapshot row cannot be delivered (a 2 MB row, over the
# producer's default message.max.bytes: Kafka will never take it) while Kafka
# itself answers: the run must exit 1 and drop the slot
# it created ("dropped replication slot ... that this run created"), with no
# "complete" state record.  (A Kafka that does not answer makes the relay wait,
# not fail: deliveries never time out.)
# Item 2 (slot gap; the state topic holds the relay's confirmed position):
#  (a) relay stopped (SIGTERM, exit 0), rows inserted, the slot dropped and
#      created again with pg_create_logical_replication_slot, more rows: the
#      next start exits 1 with the gap message ("is at X", X = the slot's
#      confirmed_flush_lsn; "confirmed only up to Y", Y at or past what the old
#      slot had confirmed and below X; "--snapshot always"), leaves the slot
#      as it was (its pg_replication_slots row, and no slot command in the
#      server log), and streams nothing (the rows inserted after the
#      re-creation are not in Kafka).  The fix it names (--snapshot always)
#      then works: a new snapshot, every row in Kafka.
#  (b) the same with pg_replication_slot_advance(slot, pg_current_wal_lsn())
#      while the relay is stopped.
#  (c) control: a plain stop and start streams on (the rows written meanwhile
#      arrive, no new snapshot) and a PostgreSQL restart under the running
#      relay does not raise the gap either (the same process reconnects and
#      streams).
#  (d) while the relay runs: its walsender is terminated and the slot dropped
#      (retried until the walsender let go of it) and created again, all in one
#      psql session, well inside the relay's first reconnect delay (1 s): the
#      relay stops at its reconnect with the gap message, exit 1, slot untouched.
# Item 3 (one relay per slot): relay A snapshots a 20,000-row table whose
# topic has no partition leader, so its snapshot cannot complete while relay B
# is tried (deterministic, without a big table: the test broker keeps only
# ~5 MiB per partition); two pgbench writers update random keys meanwhile.  B,
# on the same slot, must exit 1 with "another cdc-relay is already running on
# slot ..." naming the server process that holds the advisory lock, and change
# nothing: A's slot row is the same, no slot command in the server log, no
# state record from B.  Then the leaders come back, A completes and streams; a
# relay B started now is refused the same way and A's walsender is untouched.
# Once the writers stop and the slot confirmed their last write, Kafka's last
# record per key equals the table for every key.
# Item 9 (permanent server errors, each: exit 1 within 60 s, one line with the
# fix, every log line timestamped, i.e. libpq's DETAIL flattened):
#  (a) walsender terminated and the slot dropped for good while the relay runs:
#      'replication slot "S" does not exist'; the relay does not re-create it.
#      The fix it names (start again) then works.
#  (b) a node with 1 MB WAL segments and max_slot_wal_keep_size = 1MB: with the
#      relay stopped, WAL is generated until the slot's wal_status is 'lost';
#      the next start: 'replication slot "S" was invalidated', the fix
#      (--snapshot always, max_slot_wal_keep_size) on the same line; the slot
#      is left alone.  The fix then works.
#  (c) the relay streams database "victim"; its walsender is terminated, its
#      slot dropped and the database dropped (WITH (FORCE)) in one psql
#      session: 'database "victim" no longer exists'.  A reconnect that falls
#      between the slot drop and the database drop sees the slot missing first,
#      so 'replication slot "S" does not exist' is accepted too (noted).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP;
use RelayTest;

my $json = JSON::PP->new->canonical;
my $node = logical_node('slotsafe', 'max_connections = 40');
my $broker = start_broker();
my $bs = $broker->{bootstrap};
my $sysid = $node->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()');
my $LSN = qr{[0-9A-Fa-f]+/[0-9A-Fa-f]+};
# the shortest wait that proves a relay does not stop by itself (item 9: < 60 s)
my $EXIT_WAIT = 60;

$node->safe_psql('postgres', q{
CREATE EXTENSION cdc_relay;
CREATE TABLE t7 (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO t7 SELECT g, 'seed' FROM generate_series(1, 100) g;
CREATE TABLE g2a (id int PRIMARY KEY, v text NOT NULL);
CREATE TABLE g2b (id int PRIMARY KEY, v text NOT NULL);
CREATE TABLE g2c (id int PRIMARY KEY, v text NOT NULL);
CREATE TABLE g2d (id int PRIMARY KEY, v text NOT NULL);
CREATE TABLE t9a (id int PRIMARY KEY, v text NOT NULL);
CREATE TABLE hot (id int PRIMARY KEY, n int NOT NULL);
INSERT INTO hot SELECT g, 0 FROM generate_series(1, 20000) g;
ANALYZE hot;
});
$node->safe_psql('postgres', "INSERT INTO $_ SELECT g, 'seed' FROM generate_series(1, 10) g")
  for qw(g2a g2b g2c g2d t9a);

# ---- helpers ---------------------------------------------------------------------

sub sql { return $node->safe_psql($_[1] // 'postgres', $_[0]); }

sub insert_lsn { return sql('SELECT pg_current_wal_insert_lsn()'); }

# Insert ids $from..$to into $table with value $v; returns the WAL position after.
sub insert_rows
{
	my ($table, $from, $to, $v, $db) = @_;
	sql("INSERT INTO $table SELECT g, '$v' FROM generate_series($from, $to) g", $db);
	return sql('SELECT pg_current_wal_insert_lsn()', $db);
}

# The relay's arguments for a slot capturing the given tables.
sub relay_args
{
	my ($slot, @tables) = @_;
	return ('-S', $slot, '--topic-prefix', 'cdc', '--tables', join(',', map { "public.$_" } @tables));
}

# The slot's pg_replication_slots row as one string ('' when there is none):
# what must not change while a relay that refuses the slot runs.
sub slot_row
{
	my ($n, $slot) = @_;
	return $n->safe_psql('postgres',
		"SELECT plugin, database, restart_lsn, confirmed_flush_lsn, catalog_xmin, wal_status "
		  . "FROM pg_replication_slots WHERE slot_name = '$slot'");
}

# The ids (of keys {"id":N}) in a topic with a value: {id => number of messages}.
sub kafka_ids
{
	my ($topic) = @_;
	my %n;
	for my $m (consume($bs, $topic))
	{
		$n{$1}++ if defined $m->{value} && ($m->{key} // '') =~ /^\{"id":(\d+)\}$/;
	}
	return \%n;
}

# The ids among $from..$to that are in a topic, and those that are not.
sub ids_in_kafka
{
	my ($topic, $from, $to) = @_;
	my $ids = kafka_ids($topic);
	return grep { $ids->{$_} } $from .. $to;
}

sub ids_missing
{
	my ($topic, $from, $to) = @_;
	my $ids = kafka_ids($topic);
	return grep { !$ids->{$_} } $from .. $to;
}

sub first_few { my @l = @_; return join(' ', @l > 10 ? (@l[0 .. 9], '...') : @l); }

# Waits for a relay process to exit by itself, at most $timeout seconds, and
# returns its exit status.  $wrong (code, optional) says the relay went on
# instead of stopping (e.g. it streamed): then, or on timeout, the relay is
# stopped and the string "still running" returned, so that is($st, 1) fails.
sub exit_status
{
	my ($p, $timeout, $wrong) = @_;
	my $went_on = 0;
	wait_until(sub { return 1 unless $p->alive; $went_on = $wrong && $wrong->(); return $went_on },
		"pid $p->{pid} to exit", $timeout);
	return $p->{status} unless $p->alive;
	diag($went_on ? "pid $p->{pid} went on instead of stopping: stopping it"
		  : "pid $p->{pid} still runs after $timeout s: stopping it");
	$p->stop(20);
	return 'still running';
}

# The first line of $log matching $re ('' when none).
sub line_of
{
	my ($log, $re) = @_;
	for my $l (split /\n/, $log)
	{
		return $l if $l =~ $re;
	}
	return '';
}

# Lines of a relay log that do not start with the relay's timestamp: pieces of
# a message that spans lines (libpq's "ERROR: ...\nDETAIL: ..." not flattened).
sub unstamped_lines
{
	my ($log) = @_;
	return grep { !/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/ } split /\n/, $log;
}

# The lines right after $line in $log that do not start with a timestamp: the
# rest of a message that spans lines.
sub continuation_of
{
	my ($log, $line) = @_;
	my @l = split /\n/, $log;
	my ($i) = grep { $l[$_] eq $line } 0 .. $#l;
	return '' unless defined $i;
	my @rest;
	push @rest, $l[$i] while ++$i <= $#l && $l[$i] !~ /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/;
	return join("\n", @rest);
}

# The server log's length now, and the slot-changing commands logged since such
# a position (replication commands and SQL functions).
sub server_log_pos { my ($n) = @_; return -s $n->logfile; }

sub slot_commands_since
{
	my ($n, $pos) = @_;
	my $log = slurp_file($n->logfile);
	return grep {
		/CREATE_REPLICATION_SLOT|DROP_REPLICATION_SLOT|pg_drop_replication_slot|pg_create_logical_replication_slot|pg_replication_slot_advance/i
	} split /\n/, substr($log, $pos);
}

# SQL: terminate the slot's walsender and drop the slot, retried until the
# walsender let go of it (at most 30 s; terminates again whoever holds it).
sub drop_slot_sql
{
	my ($slot) = @_;
	return qq{DO \$\$
DECLARE deadline timestamptz := clock_timestamp() + interval '30 s';
BEGIN
	LOOP
		PERFORM pg_terminate_backend(active_pid) FROM pg_replication_slots
		  WHERE slot_name = '$slot' AND active_pid IS NOT NULL;
		BEGIN
			PERFORM pg_drop_replication_slot('$slot');
			RETURN;
		EXCEPTION WHEN object_in_use THEN
			IF clock_timestamp() > deadline THEN RAISE; END IF;
			PERFORM pg_sleep(0.01);
		END;
	END LOOP;
END \$\$;
};
}

# The state topic's records (decoded) for a slot of database $db.
sub state_records
{
	my ($slot, $db, $sid) = @_;
	my $key = ($sid // $sysid) . '/' . ($db // 'postgres') . "/$slot";
	return map { $json->decode($_->{value}) }
	  grep { ($_->{key} // '') eq $key && defined $_->{value} } consume($bs, 'cdc.__state');
}

# Starts a relay and waits until it streams; dies (BAIL_OUT) when it does not.
sub streaming_relay
{
	my ($label, @args) = @_;
	my $opt = ref($args[0]) eq 'HASH' ? shift @args : {};
	my $r = start_relay($opt->{node} // $node, $broker, $opt, @args);
	my ($slot) = map { $args[ $_ + 1 ] } grep { $args[$_] eq '-S' } 0 .. $#args - 1;
	ok($r->wait_for_log(qr/streaming from slot "\Q$slot\E" into Kafka/, 60), "$label relay streams from slot $slot")
	  or BAIL_OUT("$label the relay did not start streaming");
	return $r;
}

# Item 2's gap message in a relay log: one ERROR line naming the slot, its
# position X (the slot's confirmed_flush_lsn $slot_at) and the relay's
# confirmed position Y (at or past $confirmed_at_stop, below X), with the fix.
sub check_gap_message
{
	my ($label, $log, $slot, $slot_at, $confirmed_at_stop) = @_;
	my $line = line_of($log, qr/replication slot "\Q$slot\E" is at $LSN but cdc-relay confirmed only up to $LSN/);
	like($line, qr/\bERROR:? replication slot "\Q$slot\E" is at $LSN but cdc-relay confirmed only up to $LSN/,
		"$label the relay logs the gap as an ERROR")
	  or return;
	my ($x, $y) = $line =~ /is at ($LSN) but cdc-relay confirmed only up to ($LSN)/;
	is($x, $slot_at, "$label the message's slot position is the slot's confirmed_flush_lsn");
	ok(lsn_cmp($y, $confirmed_at_stop) >= 0 && lsn_cmp($y, $x) < 0,
		"$label the relay's confirmed position in the message ($y) is at or past what the slot had confirmed "
		  . "($confirmed_at_stop) and below the slot's ($x)");
	like($line, qr/--snapshot always/, "$label the same line gives the fix (--snapshot always)");
	is(continuation_of($log, $line), '', "$label the message is one line");
}

# ---- item 7: a run that fails before its snapshot completed drops its slot -------------

{
	sql(q{INSERT INTO t7 VALUES (101, repeat('x', 2000000))});
	my $pos = server_log_pos($node);
	my $r = start_relay($node, $broker, relay_args('s7', 't7'));
	my $st = exit_status($r, $EXIT_WAIT);
	my $log = $r->log_content;
	is($st, 1, '(7) a snapshot that cannot be delivered: exit 1');
	like($log, qr/created replication slot "s7"/, '(7) the run created slot s7');
	unlike($log, qr/snapshot complete/, '(7) the snapshot did not complete');
	like($log, qr/dropped replication slot "s7" that this run created: the snapshot did not complete/,
		'(7) the relay says it dropped the slot it created');
	is(slot_row($node, 's7'), '', '(7) slot s7 is gone');
	ok((grep { /DROP_REPLICATION_SLOT|pg_drop_replication_slot/ } slot_commands_since($node, $pos)),
		'(7) the server log shows the slot dropped');
	ok(!(grep { ($_->{snapshot} // '') eq 'complete' } state_records('s7')),
		'(7) no "complete" state record for s7');
}

# ---- item 2 (a): slot dropped and created again while the relay was stopped -----------

{
	my $r = streaming_relay('(2a)', relay_args('gap_a', 'g2a'));
	ok(wait_for_confirmed($node, 'gap_a', insert_rows('g2a', 101, 110, 'streamed'), 60),
		'(2a) rows 101..110 confirmed');
	is($r->stop, 0, '(2a) relay exits 0 on SIGTERM');
	my $at_stop = confirmed_flush($node, 'gap_a');
	{
		my @st = state_records('gap_a');
		my $c = @st ? $st[-1]{confirmed_lsn} : undef;
		ok(defined $c && lsn_cmp($c, $at_stop) >= 0,
			"(2a) the state topic's last record for the slot has confirmed_lsn at or past the slot's ($at_stop)")
		  or diag('last state record: ' . (@st ? $json->encode($st[-1]) : 'none'));
	}
	insert_rows('g2a', 201, 210, 'gap');
	sql(q{SELECT pg_drop_replication_slot('gap_a')});
	sql(q{SELECT pg_create_logical_replication_slot('gap_a', 'cdc_relay')});
	my $after = insert_rows('g2a', 301, 310, 'after re-creation');
	my $row = slot_row($node, 'gap_a');
	my $slot_at = confirmed_flush($node, 'gap_a');
	my $pos = server_log_pos($node);

	$r = start_relay($node, $broker, relay_args('gap_a', 'g2a'));
	my $st = exit_status($r, $EXIT_WAIT, sub { lsn_cmp(confirmed_flush($node, 'gap_a'), $after) >= 0 });
	my $log = $r->log_content;
	is($st, 1, '(2a) start on the re-created slot: exit 1');
	check_gap_message('(2a)', $log, 'gap_a', $slot_at, $at_stop);
	is(slot_row($node, 'gap_a'), $row, '(2a) the slot is as it was (pg_replication_slots row)');
	is(join("\n", slot_commands_since($node, $pos)), '', '(2a) the relay created, dropped or advanced no slot');
	is(first_few(ids_in_kafka('cdc.public.g2a', 301, 310)), '', '(2a) no row inserted after the re-creation is in Kafka');
	is(first_few(ids_in_kafka('cdc.public.g2a', 201, 210)), '',
		'(2a) the gap is real: rows inserted while the slot was gone are not in Kafka');

	# the fix it names
	$r = streaming_relay('(2a) with --snapshot always', relay_args('gap_a', 'g2a'), '--snapshot', 'always');
	ok(wait_until(sub { !ids_missing('cdc.public.g2a', 201, 210) && !ids_missing('cdc.public.g2a', 301, 310) },
			'the new snapshot to deliver rows 201..210 and 301..310', 60),
		'(2a) --snapshot always: the rows of the gap and those after it are in Kafka');
	is($r->stop, 0, '(2a) that relay exits 0 on SIGTERM');
}

# ---- item 2 (b): slot advanced while the relay was stopped -------------------------------

{
	my $r = streaming_relay('(2b)', relay_args('gap_b', 'g2b'));
	ok(wait_for_confirmed($node, 'gap_b', insert_rows('g2b', 101, 110, 'streamed'), 60),
		'(2b) rows 101..110 confirmed');
	is($r->stop, 0, '(2b) relay exits 0 on SIGTERM');
	my $at_stop = confirmed_flush($node, 'gap_b');
	insert_rows('g2b', 201, 210, 'gap');
	sql(q{SELECT pg_replication_slot_advance('gap_b', pg_current_wal_lsn())});
	my $after = insert_rows('g2b', 301, 310, 'after the advance');
	my $row = slot_row($node, 'gap_b');
	my $slot_at = confirmed_flush($node, 'gap_b');
	my $pos = server_log_pos($node);

	$r = start_relay($node, $broker, relay_args('gap_b', 'g2b'));
	my $st = exit_status($r, $EXIT_WAIT, sub { lsn_cmp(confirmed_flush($node, 'gap_b'), $after) >= 0 });
	my $log = $r->log_content;
	is($st, 1, '(2b) start on the advanced slot: exit 1');
	check_gap_message('(2b)', $log, 'gap_b', $slot_at, $at_stop);
	is(slot_row($node, 'gap_b'), $row, '(2b) the slot is as it was (pg_replication_slots row)');
	is(join("\n", slot_commands_since($node, $pos)), '', '(2b) the relay created, dropped or advanced no slot');
	is(first_few(ids_in_kafka('cdc.public.g2b', 301, 310)), '', '(2b) no row inserted after the advance is in Kafka');
	sql(q{SELECT pg_drop_replication_slot('gap_b')});
}

# ---- item 2 (c): no false alarm on a plain stop/start or a server restart ------------------

{
	my $r = streaming_relay('(2c)', relay_args('gap_c', 'g2c'));
	ok(wait_for_confirmed($node, 'gap_c', insert_rows('g2c', 101, 110, 'streamed'), 60),
		'(2c) rows 101..110 confirmed');
	is($r->stop, 0, '(2c) relay exits 0 on SIGTERM');
	my $after = insert_rows('g2c', 201, 210, 'while stopped');
	$r = streaming_relay('(2c) second start', relay_args('gap_c', 'g2c'));
	ok(wait_for_confirmed($node, 'gap_c', $after, 60), '(2c) the second start streams on: confirmed passes the rows written meanwhile');
	is(first_few(ids_missing('cdc.public.g2c', 201, 210)), '', '(2c) the rows written while it was stopped are in Kafka');
	unlike($r->log_content, qr/snapshot at|created replication slot/, '(2c) no new snapshot');

	my $from = length($r->log_content);
	$node->restart;
	ok(wait_until(sub { substr($r->log_content, $from) =~ /reconnected; streaming from slot "gap_c"/ || !$r->alive },
			'the relay to reconnect after the server restart', 60)
		  && $r->alive,
		'(2c) after a server restart the relay reconnects by itself');
	$after = insert_rows('g2c', 301, 310, 'after the restart');
	ok(wait_for_confirmed($node, 'gap_c', $after, 60), '(2c) it streams after the restart: confirmed passes new rows');
	is(first_few(ids_missing('cdc.public.g2c', 301, 310)), '', '(2c) the rows written after the restart are in Kafka');
	ok($r->alive, '(2c) the relay still runs');
	unlike($r->log_content, qr/cdc-relay confirmed only up to/, '(2c) no gap reported on a stop/start or a server restart');
	is($r->stop, 0, '(2c) relay exits 0 on SIGTERM');
	sql(q{SELECT pg_drop_replication_slot('gap_c')});
}

# ---- item 2 (d): slot dropped and re-created between the relay's sessions -------------------

{
	my $r = streaming_relay('(2d)', relay_args('gap_d', 'g2d'));
	my $at_stop = insert_rows('g2d', 101, 110, 'streamed');
	ok(wait_for_confirmed($node, 'gap_d', $at_stop, 60), '(2d) rows 101..110 confirmed');
	$at_stop = confirmed_flush($node, 'gap_d');
	my $from = length($r->log_content);
	my $t0 = time();
	# one psql session, one statement after the other: well inside the relay's
	# first reconnect delay (1 s)
	sql(drop_slot_sql('gap_d')
		  . "INSERT INTO g2d SELECT g, 'gap' FROM generate_series(201, 210) g;\n"
		  . "SELECT pg_create_logical_replication_slot('gap_d', 'cdc_relay');\n");
	my $took = time() - $t0;
	note sprintf('(2d) walsender terminated, slot dropped and created again in %.2f s', $took);
	diag(sprintf('(2d) that took %.2f s: the relay may have reconnected (after 1 s) before the slot was back', $took))
	  if $took > 0.8;
	my $slot_at = confirmed_flush($node, 'gap_d');
	my $row = slot_row($node, 'gap_d');
	my $pos = server_log_pos($node);
	my $after = insert_rows('g2d', 301, 310, 'after re-creation');
	my $st = exit_status($r, $EXIT_WAIT, sub {
		lsn_cmp(confirmed_flush($node, 'gap_d'), $after) >= 0
		  || substr($r->log_content, $from) =~ /reconnected; streaming/ });
	my $log = substr($r->log_content, $from);
	is($st, 1, '(2d) the relay stops at its reconnect: exit 1');
	check_gap_message('(2d)', $log, 'gap_d', $slot_at, $at_stop);
	is(slot_row($node, 'gap_d'), $row, '(2d) the slot is as it was (pg_replication_slots row)');
	is(join("\n", slot_commands_since($node, $pos)), '', '(2d) the relay created, dropped or advanced no slot');
	is(first_few(ids_in_kafka('cdc.public.g2d', 301, 310)), '', '(2d) no row inserted after the re-creation is in Kafka');
	sql(q{SELECT pg_drop_replication_slot('gap_d')});
}

# ---- item 3: one relay per slot ------------------------------------------------------------

{
	my $slot = 'one';
	my @args = (relay_args($slot, 'hot'), '--snapshot-jobs', '1');
	my $script = PostgreSQL::Test::Utils::tempdir() . '/hot.sql';
	PostgreSQL::Test::Utils::append_to_file($script,
		"\\set id random(1, 20000)\nUPDATE hot SET n = n + 1 WHERE id = :id;\n");
	my $partitions = 4;
	like($broker->command("create cdc.public.hot $partitions"), qr/^ok/, '(3) topic cdc.public.hot created');
	like($broker->command("leader cdc.public.hot $_ none"), qr/^ok/, "(3) partition $_ has no leader")
	  for 0 .. $partitions - 1;

	my $ra = start_relay($node, $broker, { name => 'relayA' }, @args);
	ok($ra->wait_for_log(qr/snapshot at /, 60), '(3) relay A starts its snapshot')
	  or BAIL_OUT('(3) relay A did not start its snapshot');
	my $writers = start_process(
		[ 'pgbench', '-n', '-c', '2', '-j', '2', '-R', '100', '-T', '600', '-f', $script,
		  $node->connstr('postgres') ],
		name => 'writers');
	ok(wait_until(sub { sql('SELECT sum(n) FROM hot') >= 20 }, 'the writers to update rows', 60),
		'(3) the writers update random rows during the snapshot');

	my $row = slot_row($node, $slot);
	my $states = () = state_records($slot);
	my $pos = server_log_pos($node);
	my $rb = start_relay($node, $broker, { name => 'relayB' }, @args);
	my $st = exit_status($rb, $EXIT_WAIT,
		sub { $rb->log_content =~ /dropping slot|created replication slot|snapshot at|reconnecting in/ });
	my $log = $rb->log_content;
	my @holders = split /\n/, sql(q{SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted ORDER BY pid});
	is($st, 1, '(3) relay B, started during A\'s snapshot: exit 1');
	my $line = line_of($log, qr/another cdc-relay is already running on slot "$slot"/);
	like($line, qr/\bERROR:? another cdc-relay is already running on slot "$slot" \(server process \d+\b.*only one relay may use a slot/,
		'(3) B says another relay runs on the slot');
	my ($holder) = $line =~ /\(server process (\d+)/;
	ok(defined $holder && (grep { $_ eq $holder } @holders),
		'(3) the server process it names holds an advisory lock')
	  or diag('named: ' . ($holder // 'none') . "; advisory lock holders: @holders");
	ok($ra->alive && $ra->log_content !~ /snapshot complete/, '(3) A was still in its snapshot when B stopped');
	is(slot_row($node, $slot), $row, '(3) A\'s slot is as it was (pg_replication_slots row)');
	is(join("\n", slot_commands_since($node, $pos)), '', '(3) B created or dropped no slot');
	unlike($log, qr/dropping slot|created replication slot|snapshot at/, '(3) B\'s log: no slot dropped or created, no snapshot');
	is(scalar(() = state_records($slot)), $states, '(3) B wrote no state record');

	like($broker->command("leader cdc.public.hot $_ 1"), qr/^ok/, "(3) partition $_ has its leader back")
	  for 0 .. $partitions - 1;
	ok($ra->wait_for_log(qr/streaming from slot "$slot" into Kafka/, 60), '(3) A completes its snapshot and streams');
	like($ra->log_content, qr/snapshot complete/, '(3) A\'s snapshot completed');

	my $walsender = sql("SELECT active_pid FROM pg_replication_slots WHERE slot_name = '$slot'");
	$rb = start_relay($node, $broker, { name => 'relayB2' }, @args);
	$st = exit_status($rb, $EXIT_WAIT,
		sub { $rb->log_content =~ /dropping slot|created replication slot|snapshot at|reconnecting in|streaming from/ });
	is($st, 1, '(3) relay B, started while A streams: exit 1');
	like($rb->log_content, qr/\bERROR:? another cdc-relay is already running on slot "$slot"/,
		'(3) B says another relay runs on the slot');
	is(sql("SELECT active_pid FROM pg_replication_slots WHERE slot_name = '$slot'"), $walsender,
		'(3) A\'s walsender still holds the slot');

	$writers->kill('TERM');
	$writers->finish(30);
	my $end = insert_lsn();
	ok(wait_for_confirmed($node, $slot, $end, 60), "(3) A confirms the writers' last update ($end)");
	ok($ra->alive, '(3) A still runs');
	is($ra->stop, 0, '(3) A exits 0 on SIGTERM');
	unlike($ra->log_content, qr/reconnecting in/, '(3) A never lost its slot');

	my %db = map { my ($id, $n) = split /\|/; ("{\"id\":$id}" => $n) } split /\n/, sql('SELECT id, n FROM hot');
	my $last = last_by_key([ consume($bs, 'cdc.public.hot') ]);
	my %kafka = map { ($_ => ($last->{$_} =~ /"after":\{"id":\d+,"n":(-?\d+)\}/ ? $1 : $last->{$_})) } keys %$last;
	my @missing = grep { !exists $kafka{$_} } sort keys %db;
	my @stale = grep { exists $kafka{$_} && $kafka{$_} ne $db{$_} } sort keys %db;
	my @extra = grep { !exists $db{$_} } sort keys %kafka;
	my $updated = sql('SELECT count(*) FROM hot WHERE n > 0');
	note "$updated of 20000 rows were updated by the writers";
	ok($updated > 20, "(3) the writers updated rows ($updated)");
	ok(!@missing && !@stale && !@extra, '(3) Kafka\'s last record per key equals the table for every key')
	  or diag(scalar(@missing) . ' missing (' . first_few(@missing) . '), ' . scalar(@stale) . ' stale ('
		  . join(' ', map { "$_: kafka $kafka{$_} table $db{$_}" } @stale[0 .. ($#stale < 4 ? $#stale : 4)])
		  . '), ' . scalar(@extra) . ' extra');
	sql("SELECT pg_drop_replication_slot('$slot')") if slot_row($node, $slot) ne '';
}

# ---- item 9: permanent server errors ------------------------------------------------------

# Checks that relay $r stops by itself with exit 1 within $EXIT_WAIT s and that
# its log since offset $from has one ERROR line matching $re (and $fix_re, when
# given), with every line of its log timestamped.  Returns that line.
sub check_permanent_stop
{
	my ($label, $r, $from, $re, $fix_re) = @_;
	my $t0 = time();
	my $st = exit_status($r, $EXIT_WAIT);
	note sprintf("$label the relay ended %.1f s after the event", time() - $t0);
	my $log = substr($r->log_content, $from);
	is($st, 1, "$label the relay stops with exit 1 within $EXIT_WAIT s");
	my $line = line_of($log, $re);
	like($line, qr/\bERROR:? /, "$label it logs the error as an ERROR") or diag("log since the event:\n$log");
	like($line, $fix_re, "$label the same line gives the fix") if $fix_re;
	is(continuation_of($log, $line), '', "$label the message is one line");
	is(join("\n", unstamped_lines($r->log_content)), '', "$label every log line is one message (DETAIL flattened)");
	return $line;
}

# (a) slot dropped while the relay streams
{
	my $r = streaming_relay('(9a)', relay_args('gone', 't9a'));
	ok(wait_for_confirmed($node, 'gone', insert_rows('t9a', 101, 110, 'streamed'), 60), '(9a) rows 101..110 confirmed');
	my $from = length($r->log_content);
	sql(drop_slot_sql('gone'));
	my $pos = server_log_pos($node);
	insert_rows('t9a', 201, 210, 'slot gone');
	check_permanent_stop('(9a)', $r, $from, qr/replication slot "gone" does not exist/,
		qr/replication slot "gone" does not exist.*; fix: .*start cdc-relay again/);
	is(slot_row($node, 'gone'), '', '(9a) the relay did not create the slot again by itself');
	is(join("\n", slot_commands_since($node, $pos)), '', '(9a) no slot command from the relay');

	# the fix it names
	$r = streaming_relay('(9a) started again', relay_args('gone', 't9a'));
	like($r->log_content, qr/created replication slot "gone"/, '(9a) started again, it creates the slot');
	is(first_few(ids_missing('cdc.public.t9a', 201, 210)), '', '(9a) and its snapshot has the rows written meanwhile');
	is($r->stop, 0, '(9a) that relay exits 0 on SIGTERM');
	sql(q{SELECT pg_drop_replication_slot('gone')});
}

# (c) database dropped while the relay streams it
{
	sql('CREATE DATABASE victim');
	sql(q{CREATE EXTENSION cdc_relay;
CREATE TABLE t9c (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO t9c SELECT g, 'seed' FROM generate_series(1, 10) g;}, 'victim');
	my $r = streaming_relay('(9c)', { dbname => 'victim' }, relay_args('victim_slot', 't9c'));
	ok(wait_for_confirmed($node, 'victim_slot', insert_rows('t9c', 101, 110, 'streamed', 'victim'), 60),
		'(9c) rows 101..110 confirmed');
	my $from = length($r->log_content);
	sql(drop_slot_sql('victim_slot') . "DROP DATABASE victim WITH (FORCE);\n");
	my $line = check_permanent_stop('(9c)', $r, $from,
		qr/database "victim" no longer exists|replication slot "victim_slot" does not exist/);
	like($line, qr/database "victim" no longer exists|replication slot "victim_slot" does not exist/,
		'(9c) it says the database (or, had it reconnected between the two drops, the slot) is gone');
	note "(9c) the relay said: $line";
}

# (b) slot invalidated (wal_status lost): a node with 1 MB WAL segments
{
	my $small = PostgreSQL::Test::Cluster->new('smallwal');
	$small->init(allows_streaming => 'logical', extra => ['--wal-segsize=1']);
	$small->append_conf('postgresql.conf', "output_plugin_libraries = 'pgoutput, test_decoding, cdc_relay'\n"
		  . "max_slot_wal_keep_size = 1MB\nmax_connections = 20\n");
	$small->start;
	$small->safe_psql('postgres', q{CREATE EXTENSION cdc_relay;
CREATE TABLE t9b (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO t9b SELECT g, 'seed' FROM generate_series(1, 10) g;});
	my $r = streaming_relay('(9b)', { node => $small }, relay_args('lost', 't9b'));
	$small->safe_psql('postgres', q{INSERT INTO t9b SELECT g, 'streamed' FROM generate_series(101, 110) g});
	ok(wait_for_confirmed($small, 'lost', $small->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()'), 60),
		'(9b) rows 101..110 confirmed');
	is($r->stop, 0, '(9b) relay exits 0 on SIGTERM');
	$small->safe_psql('postgres', q{INSERT INTO t9b SELECT g, 'while stopped' FROM generate_series(201, 210) g});
	ok(wait_until(sub {
		$small->safe_psql('postgres', q{SELECT pg_logical_emit_message(false, 'filler', repeat('x', 300000));
SELECT pg_switch_wal();
CHECKPOINT;});
		$small->safe_psql('postgres', q{SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'lost'}) eq 'lost' },
		'the slot to lose its WAL', 60),
		'(9b) with the relay stopped, WAL is generated until the slot\'s wal_status is lost');
	my $row = slot_row($small, 'lost');
	my $pos = server_log_pos($small);
	$r = start_relay($small, $broker, relay_args('lost', 't9b'));
	check_permanent_stop('(9b)', $r, 0, qr/replication slot "lost" was invalidated/,
		qr/replication slot "lost" was invalidated.*fix: .*--snapshot always.*max_slot_wal_keep_size/);
	is(slot_row($small, 'lost'), $row, '(9b) the slot is left as it was');
	is(join("\n", slot_commands_since($small, $pos)), '', '(9b) the relay created or dropped no slot');

	# the fix it names
	$r = streaming_relay('(9b) with --snapshot always', { node => $small }, relay_args('lost', 't9b'),
		'--snapshot', 'always');
	is(first_few(ids_missing('cdc.public.t9b', 201, 210)), '',
		'(9b) with --snapshot always the rows written while it was stopped are in Kafka');
	is($r->stop, 0, '(9b) that relay exits 0 on SIGTERM');
	$small->stop;
}

is($broker->stop, 0, 'broker exits 0 on SIGTERM');
$node->stop;
done_testing();
