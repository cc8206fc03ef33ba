# test/tap/109_relay_real_kafka.pl: the relay against a real Apache Kafka 4.4 broker
# (a 1-node KRaft cluster from test/kafka/cluster.sh), for the claims of the relay's
# hardening that the test broker cannot support (it has no topic configs, no size
# limits and never answers DescribeConfigs).
#
#  (a) Snapshot, then streaming: every row reaches Kafka; the state topic holds the
#      snapshot record and, after it, checkpoint records whose confirmed_lsn never goes
#      back and, when the relay stopped, is at or past the slot's confirmed_flush_lsn
#      (the relay records a position before it confirms it).  A restart streams on
#      with no gap reported.
#  (b) The state topic: one created with cleanup.policy=delete gets the warning with
#      the fix; a compacted one none.
#  (c) A message over the topic's max.message.bytes (the relay's own producer limit
#      raised with -X message.max.bytes): the broker refuses it; the relay stops with
#      exit 1 naming topic, table, key and size, once, and the slot is not confirmed
#      past that transaction.
#  (d) The slot advanced behind the relay's back (pg_replication_slot_advance) while it
#      was stopped: the next start stops with exit 1 and the gap message, and streams
#      nothing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use RelayTest;
use KafkaCluster;

my $json = JSON::PP->new->canonical;
my $node = logical_node('realkafka');
$node->safe_psql('postgres', q{
CREATE EXTENSION cdc_relay;
CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO t SELECT g, 'seed ' || g FROM generate_series(1, 500) g;
CREATE TABLE big (id int PRIMARY KEY, v text NOT NULL);
});
my $k = KafkaCluster->start(nodes => 1);
note("Kafka at $k->{bootstrap} (started in " . sprintf('%.1f', $k->{seconds} // 0) . ' s)');
# for (c): big's topic refuses messages over 20 kB (created now: the snapshot would
# create it with the broker's defaults)
$k->create_topic('rk.public.big', config => { 'max.message.bytes' => '20000' });

sub sql { return $node->safe_psql('postgres', $_[0]); }
sub insert_lsn { return sql('SELECT pg_current_wal_insert_lsn()'); }

my $sysid = sql('SELECT system_identifier FROM pg_control_system()');
my $slot = 'rk';
my @args = ('-S', $slot, '--topic-prefix', 'rk', '--heartbeat-interval', '0');

# ---- (a) snapshot, streaming, the recorded confirmed position ------------------------
my $relay = start_relay($node, $k, @args);
ok($relay->wait_for_log(qr/streaming from slot "$slot" into Kafka/), '(a) snapshot taken, then streaming');
sql(q{INSERT INTO t SELECT g, 'later ' || g FROM generate_series(501, 600) g;
      UPDATE t SET v = 'updated' WHERE id <= 10; DELETE FROM t WHERE id BETWEEN 11 AND 20});
my $end = insert_lsn();
ok(wait_for_confirmed($node, $slot, $end), '(a) the changes are confirmed');
is($relay->stop, 0, '(a) exit 0 on SIGTERM');
{
	my $last = last_by_key([ consume($k, 'rk.public.t') ]);
	my %table = map { split /\|/, $_, 2 } split /\n/, sql('SELECT id, v FROM t');
	my %kafka = map { ($_ =~ /^\{"id":(\d+)\}$/ ? $1 : $_) => $json->decode($last->{$_})->{after}{v} } keys %$last;
	is_deeply(\%kafka, \%table, '(a) the last record per key equals the table (' . scalar(keys %table) . ' rows)');

	my @state = grep { ($_->{key} // '') eq "$sysid/postgres/$slot" } consume($k, 'rk.__state');
	my @v = map { $json->decode($_->{value}) } @state;
	cmp_ok(scalar(@v), '>=', 3, '(a) state records: started, complete and checkpoints (' . scalar(@v) . ')');
	is($v[-1]{snapshot}, 'complete', '(a) the last state record says the snapshot is complete');
	my @back = grep { lsn_cmp($v[$_]{confirmed_lsn}, $v[ $_ - 1 ]{confirmed_lsn}) < 0 } 1 .. $#v;
	is(scalar(@back), 0, '(a) the recorded confirmed position never goes back');
	my $slot_at = confirmed_flush($node, $slot);
	ok(lsn_cmp($v[-1]{confirmed_lsn}, $slot_at) >= 0,
		"(a) the recorded position ($v[-1]{confirmed_lsn}) is at or past the slot's ($slot_at)");
}
$relay = start_relay($node, $k, @args);
ok($relay->wait_for_log(qr/streaming from slot "$slot" into Kafka/), '(a) a restart streams');
unlike($relay->log_content, qr/is at \S+ but cdc-relay confirmed only up to|snapshot at/,
	'(a) ... with no gap reported and no new snapshot');
sql(q{INSERT INTO t VALUES (1000, 'after restart')});
$end = insert_lsn();
ok(wait_for_confirmed($node, $slot, $end), '(a) ... and confirms new changes');

# ---- (b) the state topic's cleanup.policy ----------------------------------------------
$k->create_topic('del.__state', config => { 'cleanup.policy' => 'delete' });
$k->create_topic('cmp.__state', config => { 'cleanup.policy' => 'compact' });
for my $case ([ 'del', 1 ], [ 'cmp', 0 ])
{
	my ($prefix, $warns) = @$case;
	my $r = start_relay($node, $k, '-S', "pol_$prefix", '--topic-prefix', $prefix, '--tables', 'public.t',
		'--snapshot', 'never', '--heartbeat-interval', '0');
	ok($r->wait_for_log(qr/streaming from slot "pol_$prefix" into Kafka/), "(b) $prefix: streaming");
	# the answer to DescribeConfigs is read with the streaming loop's housekeeping
	sql("INSERT INTO t VALUES (2000 + length('$prefix'), 'policy $prefix') ON CONFLICT DO NOTHING");
	my $warned = wait_until(sub { $r->log_content =~ /state topic $prefix\.__state has cleanup\.policy=delete/ },
		'the cleanup.policy warning', $warns ? undef : 5);
	if ($warns)
	{
		ok($warned, "(b) $prefix.__state with cleanup.policy=delete: a warning");
		like($r->log_content,
			qr/WARNING state topic del\.__state has cleanup\.policy=delete: its records expire .*; fix: kafka-configs --alter --entity-type topics --entity-name del\.__state --add-config cleanup\.policy=compact/,
			'(b) ... that names the consequence and the fix');
	}
	else
	{
		unlike($r->log_content, qr/cleanup\.policy/, "(b) $prefix.__state compacted: no warning");
	}
	is($r->stop, 0, "(b) $prefix: exit 0 on SIGTERM");
}

# ---- (c) a message the broker refuses for good ------------------------------------------
$relay->stop;
$relay = start_relay($node, $k, @args, '-X', 'message.max.bytes=10000000');
ok($relay->wait_for_log(qr/streaming from slot "$slot" into Kafka/), '(c) streaming');
my $before = insert_lsn();
ok(wait_for_confirmed($node, $slot, $before), '(c) confirmed up to now');
sql(q{BEGIN; INSERT INTO t VALUES (3000, 'with the big row'); INSERT INTO big VALUES (1, repeat('x', 100000)); COMMIT});
my $after_big = insert_lsn();
is($relay->finish(120), 1, '(c) the broker refuses a 100 kB message for good: exit 1');
my $log = $relay->log_content;
like($log, qr/Kafka rejected a message for good: topic rk\.public\.big, table public\.big, key \{"id":1\}, \d{6} bytes: .*max\.message\.bytes/,
	'(c) topic, table, key, size and the setting to change are named');
is(() = $log =~ /Kafka rejected a message for good/g, 1, '(c) once: no retry loop');
ok(lsn_cmp(confirmed_flush($node, $slot), $after_big) < 0, '(c) the slot is not confirmed past that transaction');

# ---- (d) the slot moved behind the relay's back -----------------------------------------
sql(q{INSERT INTO t VALUES (4000, 'in the gap')});
sql("SELECT pg_replication_slot_advance('$slot', pg_current_wal_lsn())");
my $advanced = confirmed_flush($node, $slot);
my ($rc, $out, $err) = run_relay($node, $k, { timeout => 120 }, @args, '-X', 'message.max.bytes=10000000');
is($rc, 1, '(d) a slot advanced behind the relay\'s back: exit 1');
like($err, qr/replication slot "$slot" is at \Q$advanced\E but cdc-relay confirmed only up to \S+: .*fix: take a new snapshot with --snapshot always/,
	'(d) the gap is named with the fix');
ok(!grep({ ($_->{key} // '') eq '{"id":4000}' } consume($k, 'rk.public.t')), '(d) nothing of the gap was streamed');

$k->stop;
$node->stop;
done_testing();
