# test/tap/104_relay_faults.pl — the relay (`cdc-relay run`) under faults: it
# never confirms to PostgreSQL what Kafka has not acknowledged, it recovers by
# itself, and it loses nothing (at-least-once: duplicates are allowed).
#
# One relay streams slot "faults" (--snapshot never, --status-interval 0.5,
# --heartbeat-interval 1, --exclude-tables public.noise) into a one-broker
# test cluster (`cdc-relay broker`, controlled through its stdin); kcat reads
# Kafka back.  The end LSN of a commit record is taken from an independent
# source: a test_decoding probe slot, whose COMMIT row carries the end of the
# commit record (the position a client confirms once it has the transaction).
#
#  (a) Broker down: with `down all`, five transactions are committed; once the
#      relay has received them (pg_stat_replication.write_lsn reaches the end
#      of the first one), for 3 more seconds of 0.1 s polls the slot's
#      confirmed_flush_lsn must stay below the end of the first undelivered
#      commit.  After `up all` the relay catches up by itself: confirmed_flush
#      passes the position recorded after the transactions, every row is in
#      Kafka.  Then injected Produce errors: 5 retriable NOT_LEADER_FOR_PARTITION
#      errors (librdkafka retries; the errors must all have been used up by
#      the relay's requests), and one MSG_SIZE_TOO_LARGE (Kafka rejects the
#      message for good: the relay stops with exit 1 and the fix, confirms
#      nothing from that transaction on, and a restart delivers it); in both
#      cases every row is in Kafka.  This part
#      runs a relay with -X max.in.flight.requests.per.connection=1, because
#      of a limitation of the test broker explained there.
#  (b) Server restart: a writer commits one row per transaction in a loop
#      while the server restarts (fast mode); the same relay process logs
#      "reconnecting" and "reconnected", streams on, and every row the table
#      holds (committed before, around and after the restart) is in Kafka.
#  (c) Writes to an uncaptured table only (noise, excluded) make
#      confirmed_flush_lsn pass the position recorded after them, and no noise
#      topic appears; writes in another database of the cluster only do too.
#  (d) SIGTERM, then SIGINT, with messages in flight (broker down, the relay has
#      received the transaction and the log says it waits for N > 0 messages):
#      after `up all` the relay exits 0 by itself, logs its final position
#      ("confirmed up to ...", "exiting with status 0"), the slot's
#      confirmed_flush_lsn is past the transaction and its rows are in Kafka.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use IPC::Run;
use RelayTest;

my $slot = 'faults';
my $node = logical_node('faults');
$node->safe_psql('postgres', q{
CREATE TABLE items (id int PRIMARY KEY, phase text NOT NULL);
CREATE TABLE ticks (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE noise (id bigserial PRIMARY KEY, v text NOT NULL);
});

my $broker = start_broker();
my @relay_args = ('-S', $slot, '--snapshot', 'never', '--heartbeat-interval', '1',
	'--exclude-tables', 'public.noise');
my $relay = start_relay($node, $broker, @relay_args);
$relay->wait_for_log(qr/streaming from slot "$slot" into Kafka/)
  or BAIL_OUT('the relay did not start streaming');

# ---- helpers -------------------------------------------------------------------

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub insert_lsn { return sql('SELECT pg_current_wal_insert_lsn()'); }

# Start a test_decoding probe slot: it sees the transactions committed after it.
sub probe_start
{
	sql("SELECT pg_create_logical_replication_slot('probe', 'test_decoding')");
}

# End LSN of the commit record of each xid (from the probe's COMMIT rows),
# then drop the probe.
sub probe_commit_ends
{
	my (@xids) = @_;
	my %end = map { /^COMMIT (\d+)\|(.*)$/ ? ($1 => $2) : () } split /\n/,
	  sql(q{SELECT data, lsn FROM pg_logical_slot_peek_changes('probe', NULL, NULL)
	        WHERE data LIKE 'COMMIT %'});
	sql("SELECT pg_drop_replication_slot('probe')");
	return map { $end{$_} } @xids;
}

# One transaction inserting items $from..$to; returns its xid.
sub insert_items
{
	my ($from, $to, $phase) = @_;
	return sql(qq{BEGIN;
INSERT INTO items SELECT g, '$phase' FROM generate_series($from, $to) g;
SELECT pg_current_xact_id();
COMMIT;});
}

# The ids of a topic's keys ({"id":N}), as a hash id => number of messages.
sub kafka_ids
{
	my ($topic) = @_;
	my %n;
	for my $m (consume($broker, $topic))
	{
		next unless defined $m->{key} && defined $m->{value};
		$n{$1}++ if $m->{key} =~ /^\{"id":(\d+)\}$/;
	}
	return \%n;
}

# The ids among $from..$to that are not in Kafka.
sub missing_items
{
	my ($from, $to) = @_;
	my $ids = kafka_ids('cdc.public.items');
	return grep { !$ids->{$_} } $from .. $to;
}

# The relay's walsender: write_lsn (received) and flush_lsn (confirmed).
sub walsender_positions
{
	my $r = sql(qq{SELECT coalesce(r.write_lsn::text, ''), coalesce(r.flush_lsn::text, '')
	              FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid
	              WHERE s.slot_name = '$slot'});
	return split /\|/, $r;
}

sub lsn_lt { return lsn_cmp($_[0], $_[1]) < 0; }

# ---- warm-up -----------------------------------------------------------------------

insert_items(1, 10, 'warm-up');
ok(wait_for_confirmed($node, $slot, insert_lsn()), 'warm-up: confirmed_flush_lsn passes the first transaction');
is(scalar(missing_items(1, 10)), 0, 'warm-up: its 10 rows are in Kafka');

# ---- (a) broker down ----------------------------------------------------------------

like($broker->command('down all'), qr/^ok/, '(a) broker down');
probe_start();
my @xids = map { insert_items(100 * $_ + 1, 100 * $_ + 50, 'broker-down') } 1 .. 5;
my $after_down = insert_lsn();
my ($end1) = probe_commit_ends($xids[0]);
note "first undelivered commit ends at $end1; WAL insert position after the five: $after_down";

ok(wait_until(sub { my ($w) = walsender_positions(); $w ne '' && !lsn_lt($w, $end1) },
		'the relay to receive the first transaction (write_lsn >= end of its commit)'),
	'(a) the relay received the transactions while the broker is down');
{
	my ($samples, $max, @bad) = (0, '0/0');
	my $until = time() + 3;
	while (time() < $until)
	{
		my $c = confirmed_flush($node, $slot);
		$samples++;
		$max = $c if lsn_cmp($c, $max) > 0;
		push @bad, $c unless lsn_lt($c, $end1);
		sleep(0.1);
	}
	note "$samples samples of confirmed_flush_lsn while down, highest $max";
	is(scalar(@bad), 0,
		"(a) while the broker is down confirmed_flush_lsn stays below $end1, the end of the first undelivered commit ($samples samples)")
	  or diag("confirmed_flush_lsn values at or past it: @bad[0 .. ($#bad > 4 ? 4 : $#bad)]");
}
ok($relay->alive, '(a) the relay is still running while the broker is down');
like($broker->command('up all'), qr/^ok/, '(a) broker up');
ok(wait_for_confirmed($node, $slot, $after_down),
	"(a) after up, the relay catches up by itself: confirmed_flush_lsn passes $after_down");
{
	my @missing = map { missing_items(100 * $_ + 1, 100 * $_ + 50) } 1 .. 5;
	is(scalar(@missing), 0, '(a) every row committed while the broker was down is in Kafka')
	  or diag("missing ids: @missing[0 .. ($#missing > 19 ? 19 : $#missing)]");
}

# Injected Produce errors.  librdkafka 2.0.2's mock cluster checks the
# sequence numbers of transactional producers only: when an injected error
# fails one of several in-flight requests for a partition and a later one
# succeeds, the mock accepts the gap and librdkafka counts the failed batch as
# "implicitly acked" by the later success: those messages are lost by the test
# broker, not by the relay (a real broker answers OUT_OF_ORDER_SEQUENCE_NUMBER
# and librdkafka re-sends).  So this part runs a relay with one request in
# flight per connection, where an injected error cannot leave such a gap.
is($relay->stop, 0, '(a) the relay exits 0 on SIGTERM (restarted with one request in flight)');
# No heartbeats here: the injected errors must hit the rows' Produce requests, not a
# checkpoint record that a heartbeat transaction would bring (later options win).
$relay = start_relay($node, $broker, @relay_args, '-X', 'max.in.flight.requests.per.connection=1',
	'--heartbeat-interval', '0');
$relay->wait_for_log(qr/streaming from slot "$slot" into Kafka/)
  or BAIL_OUT('the relay did not start streaming');
like($broker->command('error produce NOT_LEADER_FOR_PARTITION 5'), qr/^ok/,
	'(a) 5 retriable NOT_LEADER_FOR_PARTITION Produce errors injected');
insert_items($_ * 10 + 1000, $_ * 10 + 1009, 'retriable-errors') for 0 .. 4;
my $after_retriable = insert_lsn();
ok(wait_for_confirmed($node, $slot, $after_retriable),
	'(a) with retriable Produce errors, confirmed_flush_lsn passes the transactions');
{
	my @missing = missing_items(1000, 1049);
	is(scalar(@missing), 0, '(a) every row of those transactions is in Kafka')
	  or diag("missing ids: @missing");
}
{
	# had they not been used by the relay's requests, this produce would get one
	my ($ok, $out, $err) = (0, '', '');
	$ok = IPC::Run::run(
		[ 'kcat', '-P', '-b', $broker->{bootstrap}, '-t', 'probe.topic', '-X', 'retries=0',
		  '-X', 'message.timeout.ms=10000' ],
		'<', \"x\n", '>', \$out, '2>', \$err, IPC::Run::timeout(30));
	ok($ok && $err !~ /Not leader/i, '(a) the relay used up the 5 injected errors (a later produce with retries=0 works)')
	  or diag("kcat: $err");
}

# A Produce error that retrying cannot fix (MSG_SIZE_TOO_LARGE) stops the
# relay with the fix, and confirms nothing from that transaction on; the next
# start delivers it (the injected error is used up).
like($broker->command('error produce MSG_SIZE_TOO_LARGE 1'), qr/^ok/,
	'(a) 1 non-retriable MSG_SIZE_TOO_LARGE Produce error injected');
my $log_before = length($relay->log_content);
probe_start();
my $xid_big = insert_items(2000, 2049, 'rejected-delivery');
my ($end_big) = probe_commit_ends($xid_big);
my $after_failed = insert_lsn();
is($relay->finish, 1, '(a) a message Kafka rejects for good stops the relay with exit 1');
my $rejected_log = substr($relay->log_content, $log_before);
# The injected error hits the next Produce request: usually the rows', but it can be
# the transaction's begin record (topic cdc.transactions, key = xid) or a checkpoint
# record of the state topic (WAL written meanwhile, such as the probe slot's, moves the
# confirmed position): either way the relay must name that message and stop.
like($rejected_log,
	qr/Kafka rejected a message for good: topic (cdc\.public\.items, table public\.items, key \{"id":\d+\}|cdc\.transactions, table \(none\), key $xid_big|cdc\.__state, table \(none\), key \d+\/postgres\/$slot), \d+ bytes: .*message\.max\.bytes.*max\.message\.bytes/,
	'(a) the error names topic, table, key, size and the settings to change')
  or diag(join("\n", grep { /rejected/ } split /\n/, $rejected_log));
is(() = $rejected_log =~ /rejected a message for good/g, 1, '(a) it is logged once: no retry loop');
ok(lsn_lt(confirmed_flush($node, $slot), $end_big),
	'(a) confirmed_flush_lsn did not pass the rejected transaction');
$relay = start_relay($node, $broker, @relay_args);
$relay->wait_for_log(qr/streaming from slot "$slot" into Kafka/)
  or BAIL_OUT('the relay did not start streaming');
ok(wait_for_confirmed($node, $slot, $after_failed),
	'(a) after a restart, confirmed_flush_lsn passes the transaction');
is(scalar(missing_items(2000, 2049)), 0, '(a) every row of that transaction is in Kafka');
ok($relay->alive, '(a) the relay is still running');

# ---- (b) server restart -------------------------------------------------------------

my $stopfile = "$PostgreSQL::Test::Utils::tmp_check/writer.stop";
unlink $stopfile;
my $connstr = $node->connstr('postgres');
my $writer = RelayTest::start_process(
	[ 'bash', '-c',
	  qq{while [ ! -e '$stopfile' ]; do psql -X -q -d "\$1" -c 'INSERT INTO ticks DEFAULT VALUES' >/dev/null 2>&1 || sleep 0.05; done},
	  'writer', $connstr ],
	name => 'writer');
ok(wait_until(sub { sql('SELECT count(*) FROM ticks') >= 30 }, 'the writer to commit 30 rows'),
	'(b) the writer commits');
$log_before = length($relay->log_content);
my $relay_pid = $relay->{pid};
$node->restart;
my $ticks_at_restart = sql('SELECT count(*) FROM ticks');
note "$ticks_at_restart rows in ticks right after the restart";
ok(wait_until(sub { substr($relay->log_content, $log_before) =~ /reconnecting in \d+ ms/ }, 'the relay to reconnect'),
	'(b) the relay logs that it reconnects');
ok(wait_until(sub { substr($relay->log_content, $log_before) =~ /reconnected; streaming from slot "$slot"/ },
		'the relay to reconnect'),
	'(b) the relay reconnected by itself');
ok(wait_until(sub { sql('SELECT count(*) FROM ticks') >= $ticks_at_restart + 30 },
		'the writer to commit 30 rows after the restart'),
	'(b) the writer commits after the restart');
open(my $fh, '>', $stopfile) or die "$stopfile: $!";
close $fh;
is($writer->finish, 0, '(b) the writer stopped');
my $after_restart = insert_lsn();
ok(wait_for_confirmed($node, $slot, $after_restart),
	'(b) confirmed_flush_lsn passes the last row written');
ok($relay->alive && $relay->{pid} == $relay_pid, '(b) the same relay process streamed through the restart');
{
	my @ids = split /\n/, sql('SELECT id FROM ticks ORDER BY id');
	my $kafka = kafka_ids('cdc.public.ticks');
	my @missing = grep { !$kafka->{$_} } @ids;
	my $dups = 0;
	$dups += $_ - 1 for values %$kafka;
	note scalar(@ids) . " rows in ticks, " . scalar(keys %$kafka) . " distinct keys in Kafka, $dups duplicates";
	cmp_ok(scalar(@ids), '>', 60, '(b) the writer committed rows before and after the restart');
	is(scalar(@missing), 0, '(b) every row of ticks (before, around and after the restart) is in Kafka')
	  or diag("missing ids: @missing[0 .. ($#missing > 19 ? 19 : $#missing)]");
}

# ---- (c) writes the relay does not capture -----------------------------------------

{
	sql(join('', map { "INSERT INTO noise (v) VALUES ('n$_');\n" } 1 .. 300));
	my $after_noise = insert_lsn();
	ok(wait_for_confirmed($node, $slot, $after_noise),
		"(c) 300 commits to the uncaptured table noise: confirmed_flush_lsn passes $after_noise");
	my @noise_topics = grep { /noise/ } topics($broker);
	is("@noise_topics", '', '(c) no topic for the uncaptured table');

	$node->safe_psql('postgres', 'CREATE DATABASE other');
	$node->safe_psql('other', 'CREATE TABLE t (id bigserial PRIMARY KEY, v text)');
	$node->safe_psql('other', join('', map { "INSERT INTO t (v) VALUES ('o$_');\n" } 1 .. 300));
	my $after_other = $node->safe_psql('other', 'SELECT pg_current_wal_insert_lsn()');
	ok(wait_for_confirmed($node, $slot, $after_other),
		"(c) 300 commits in another database only: confirmed_flush_lsn passes $after_other");
	my @t_topics = grep { /\.t$/ } topics($broker);
	is("@t_topics", '', '(c) no topic for the other database\'s table');
}

# ---- (d) SIGTERM / SIGINT with messages in flight ---------------------------------------

my $next_id = 3000;
for my $sig ('TERM', 'INT')
{
	my ($from, $to) = ($next_id, $next_id + 199);
	$next_id += 1000;
	like($broker->command('down all'), qr/^ok/, "(d) SIG$sig: broker down");
	probe_start();
	my $xid = insert_items($from, $to, "sig$sig");
	my ($end) = probe_commit_ends($xid);
	ok(wait_until(sub { my ($w) = walsender_positions(); $w ne '' && !lsn_lt($w, $end) },
			'the relay to receive the transaction'),
		"(d) SIG$sig: the relay received the transaction (ends at $end)");
	my $log_from = length($relay->log_content);
	$relay->kill($sig);
	ok(wait_until(sub { substr($relay->log_content, $log_from) =~ /waiting for Kafka to confirm (\d+) messages in flight/ && $1 > 0 },
			'the relay to log messages in flight'),
		"(d) SIG$sig: the relay stops reading and waits for the messages in flight");
	like($broker->command('up all'), qr/^ok/, "(d) SIG$sig: broker up");
	my $status = $relay->finish;
	is($status, 0, "(d) SIG$sig: the relay exits with status 0");
	my $log = substr($relay->log_content, $log_from);
	like($log, qr/confirmed up to [0-9A-F]+\/[0-9A-F]+ .*cdc-relay exiting with status 0/s,
		"(d) SIG$sig: the log shows the final position and the exit status");
	unlike($log, qr/not confirmed by Kafka/, "(d) SIG$sig: no message left unconfirmed");
	my $c = confirmed_flush($node, $slot);
	ok(!lsn_lt($c, $end), "(d) SIG$sig: the slot's confirmed_flush_lsn ($c) is past the transaction ($end)");
	is(scalar(missing_items($from, $to)), 0, "(d) SIG$sig: its 200 rows are in Kafka");

	# the next relay streams from the slot
	$relay = start_relay($node, $broker, @relay_args);
	$relay->wait_for_log(qr/streaming from slot "$slot" into Kafka/)
	  or BAIL_OUT('the relay did not start streaming again');
}

is($relay->stop, 0, 'the last relay exits 0 on SIGTERM');
is($broker->stop, 0, 'the broker exits 0 on SIGTERM');
$node->stop;
done_testing();
