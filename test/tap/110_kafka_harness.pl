# test/tap/110_kafka_harness.pl: the real-Kafka harness itself (test/kafka/cluster.sh
# through KafkaCluster.pm), with real processes and kcat as the client:
#   1. a 1-node cluster starts; kcat produces and reads back (read_committed)
#   2. a compacted topic really compacts: older values and, once delete.retention.ms has
#      passed, tombstones disappear
#   3. a 3-node cluster starts beside the first (no collision); kill -9 of a partition
#      leader leaves acks=all producing (replication 3, min.insync.replicas 2); the node
#      restarts and rejoins the ISR
#   4. clusters are stopped and removed by stop, by the END block of a test that died,
#      and by the watcher when the test process is killed outright
# It prints how long each part took.
#
# Compaction within seconds, and its traps: the topic gets segment.ms=100,
# min.cleanable.dirty.ratio=0.01, min.compaction.lag.ms=0, delete.retention.ms=1000,
# file.delete.delay.ms=1000 (the broker's cleaner wakes every 0.5 s: cluster.sh).
# The active segment is never cleaned and a time-based roll happens only on the next
# append, so a test produces, waits > segment.ms and produces one more record.  The
# first cleaning keeps tombstones and starts their delete.retention.ms; Kafka 4.4
# cleans a log again only when it is dirty again (no idle pass for expired
# tombstones), so removing them takes one more roll after delete.retention.ms.
use strict;
use warnings;

use IPC::Run;
use Test::More;
use Time::HiRes qw(sleep time);
use PostgreSQL::Test::Utils;
use RelayTest;
use KafkaCluster;

my $t_all = time();
my @timings;
# topic names of this run: an existing cluster (CDC_RELAY_KAFKA_BROKERS) may serve many
my $run = "harness-$$-" . int($t_all);

# timed($what, $code): runs $code, notes and remembers how long it took
sub timed
{
	my ($what, $code) = @_;
	my $t0 = time();
	my @r = $code->();
	my $s = time() - $t0;
	push @timings, sprintf('%-44s %6.1f s', $what, $s);
	note(sprintf('%s: %.1f s', $what, $s));
	return wantarray ? @r : $r[0];
}

# produce($k, $topic, \@lines, @kcat_options): kcat -P of "key:value" lines with
# acks=all (-Z: "key:" is a tombstone); returns (ok, stderr)
sub produce
{
	my ($k, $topic, $lines, @x) = @_;
	my $in = join('', map { "$_\n" } @$lines);
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(
		[ 'kcat', '-P', '-b', $k->{bootstrap}, '-t', $topic, '-K:', '-Z', '-X', 'acks=all', @x ],
		'<', \$in, '>', \$out, '2>', \$err, IPC::Run::timeout(120));
	# kcat exits 1 when a delivery failed (message.timeout.ms passed without an ack)
	diag("kcat -P -t $topic: $err") if !$ok;
	return ($ok, $err);
}

# read_committed($k, $topic): the topic from offset 0 with isolation.level=read_committed,
# as "key=value" strings ("key=NULL" for a tombstone)
sub read_committed
{
	my ($k, $topic) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(
		[
			'kcat', '-C', '-b', $k->{bootstrap}, '-t', $topic, '-o', 'beginning', '-e', '-q', '-Z',
			'-X', 'isolation.level=read_committed', '-f', '%k=%s\n'
		],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60))
	  or die "kcat -C -t $topic failed: $err";
	return split /\n/, $out;
}

# partition_state($k, $topic): (leader, [isr]) of partition 0 from kcat -L
sub partition_state
{
	my ($k, $topic) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'kcat', '-L', '-b', $k->{bootstrap}, '-t', $topic, '-m', '5' ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	return (undef, []) unless $out =~ /partition 0, leader (-?\d+), replicas: [\d,]*, isrs: ([\d,]*)/;
	return ($1, [ sort split /,/, $2 ]);
}

sub rss_mib
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/status") or return 'n/a';
	my ($kb) = map { /^VmRSS:\s+(\d+)/ ? $1 : () } <$fh>;
	close $fh;
	return defined $kb ? sprintf('%.0f MiB', $kb / 1024) : 'n/a';
}

# alive($pid): the process exists and is not a zombie (a killed node stays one until
# init reaps it, having released its ports and files already)
sub alive
{
	my ($pid) = @_;
	return 0 unless defined $pid && open(my $fh, '<', "/proc/$pid/stat");
	my $stat = <$fh> // '';
	close $fh;
	return $stat =~ /^\d+ \(.*\) ([A-Za-z])/ && $1 ne 'Z' && $1 ne 'X';
}

# ---------------------------------------------------------------------------
# 1. one node, produce and consume

my $k1 = timed('1-node cluster start', sub { KafkaCluster->start(nodes => 1) });
if (!$k1->external)
{
	like($k1->{bootstrap}, qr/^127\.0\.0\.1:\d+$/, '1-node: one bootstrap address on 127.0.0.1');
	ok(-d $k1->{dir} && alive($k1->pid(1)), '1-node: directory and node process exist');
	push @timings, sprintf('%-44s %s', '1-node RSS after start', rss_mib($k1->pid(1)));
}

my ($ok) = timed('produce 3 records (auto-created topic)',
	sub { produce($k1, "$run.plain", [ 'a:1', 'b:2', 'c:3' ]) });
ok($ok, 'kcat produced with acks=all');
is_deeply([ read_committed($k1, "$run.plain") ], [ 'a=1', 'b=2', 'c=3' ],
	'kcat reads them back with isolation.level=read_committed');
ok((grep { $_ eq "$run.plain" } topics($k1)), "RelayTest::topics takes the cluster object");

# ---------------------------------------------------------------------------
# 2. compaction

my %fast = %{ KafkaCluster::fast_compaction() };
timed('create the compacted topic (KafkaAdmin.java)',
	sub { $k1->create_topic("$run.compact", config => \%fast) });
my $conf = $k1->topic_configs("$run.compact");
is_deeply({ map { ($_ => $conf->{$_}) } keys %fast }, \%fast, 'the topic has the given configs');

ok((produce($k1, "$run.compact", [ 'k1:a', 'k1:b', 'k2:x', 'k2:' ]))[0], 'produced k1=a, k1=b, k2=x, tombstone k2');
my @before = read_committed($k1, "$run.compact");
is_deeply(\@before, [ 'k1=a', 'k1=b', 'k2=x', 'k2=NULL' ], 'all four are there before any roll');

# roll: wait > segment.ms, append one more record
sleep(0.3);
my $n = 0;
produce($k1, "$run.compact", [ 'k3:' . ++$n ]);
my @now;
my $compacted = timed(
	'first cleaning (older values gone)',
	sub {
		wait_until(
			sub {
				@now = read_committed($k1, "$run.compact");
				return !grep { $_ eq 'k1=a' || $_ eq 'k2=x' } @now;
			},
			'the cleaner to remove k1=a and k2=x',
			90);
	});
ok($compacted, 'the cleaner removed the overwritten values') or diag("topic holds: @now");

# tombstone: after delete.retention.ms, roll again until the cleaner drops it
my $tomb = timed(
	'tombstone removal',
	sub {
		wait_until(
			sub {
				@now = read_committed($k1, "$run.compact");
				return 1 unless grep { /^k2=/ } @now;
				sleep(1.1);    # > delete.retention.ms, > segment.ms
				produce($k1, "$run.compact", [ 'k3:' . ++$n ]);
				return 0;
			},
			'the cleaner to remove the tombstone of k2',
			90);
	});
ok($tomb, 'the tombstone is gone once delete.retention.ms passed') or diag("topic holds: @now");
is_deeply([ grep { /^k1=/ } @now ], ['k1=b'], 'exactly one record of k1: the last value');
my $last = last_by_key([ consume($k1, "$run.compact") ]);
is_deeply($last, { k1 => 'b', k3 => $n }, 'RelayTest::consume and last_by_key take the cluster object: k1=b, k3 latest, no k2');

# ---------------------------------------------------------------------------
# 3. three nodes: kill -9 of the leader under acks=all, restart, rejoin

SKIP:
{
	skip 'the 3-node part needs clusters this test starts (CDC_RELAY_KAFKA_BROKERS is set)', 14
	  if $k1->external;

	my $k3 = timed('3-node cluster start (beside the 1-node one)', sub { KafkaCluster->start(nodes => 3) });
	my %p1 = map { $_ => 1 } $k1->{bootstrap} =~ /:(\d+)/g;
	ok(!(grep { $p1{$_} } $k3->{bootstrap} =~ /:(\d+)/g) && $k1->{dir} ne $k3->{dir},
		'3-node: own ports and directory beside the running 1-node cluster');
	push @timings, sprintf('%-44s %s', '3-node RSS after start', join(', ', map { rss_mib($k3->pid($_)) } 1 .. 3));

	# the 1-node cluster goes away completely
	my ($dir1, $pid1) = ($k1->{dir}, $k1->pid(1));
	ok(timed('1-node stop', sub { $k1->stop }), '1-node: stop succeeded');
	ok(!-e $dir1 && !alive($pid1), '1-node: process gone, directory removed');
	is(scalar(grep { $_ eq "$run.plain" } topics($k3)), 0, '3-node cluster is a different cluster');

	$k3->create_topic("$run.rf3", replication => 3, config => { 'min.insync.replicas' => 2 });
	my ($leader, $isr);
	ok(wait_until(sub { ($leader, $isr) = partition_state($k3, "$run.rf3"); @$isr == 3 }, 'ISR of 3', 60),
		'replication 3: all three replicas in sync');
	my @batch1 = map { "m$_:v$_" } 1 .. 100;
	my @batch2 = map { "m$_:v$_" } 101 .. 200;
	ok((produce($k3, "$run.rf3", \@batch1))[0], '100 records with acks=all');

	my $killed = $leader;
	timed("kill -9 node $killed (the partition leader)", sub { $k3->kill_node($killed) });
	ok(!alive($k3->pid($killed)), "node $killed is gone");
	($ok) = timed('produce 100 more with acks=all after the kill',
		sub { produce($k3, "$run.rf3", \@batch2, '-X', 'message.timeout.ms=90000') });
	ok($ok, 'acks=all producing goes on with 2 of 3 replicas (min.insync.replicas=2)');
	ok(wait_until(sub { ($leader, $isr) = partition_state($k3, "$run.rf3");
				defined $leader && $leader != $killed && @$isr == 2 && !grep { $_ == $killed } @$isr },
			'a new leader and an ISR of 2', 60),
		"leadership moved off node $killed, ISR shrank to 2")
	  or diag("leader $leader, isr @$isr");

	timed("restart node $killed", sub { $k3->restart_node($killed) });
	ok(alive($k3->pid($killed)), "node $killed runs again");
	ok(timed("node $killed back in the ISR",
			sub { wait_until(sub { ($leader, $isr) = partition_state($k3, "$run.rf3"); @$isr == 3 }, 'ISR of 3', 90) }),
		"node $killed rejoined the ISR") or diag("isr @$isr");
	is_deeply([ read_committed($k3, "$run.rf3") ], [ map { s/:/=/r } @batch1, @batch2 ],
		'all 200 records, in order, none lost');

	push @timings, sprintf('%-44s %s', '3-node RSS at the end', join(', ', map { rss_mib($k3->pid($_)) } 1 .. 3));
	my @pids = map { $k3->pid($_) } 1 .. 3;
	my $dir3 = $k3->{dir};
	ok(timed('3-node stop', sub { $k3->stop }), '3-node: stop succeeded');
	ok(!-e $dir3 && !(grep { alive($_) } @pids), '3-node: processes gone, directory removed');
}

# ---------------------------------------------------------------------------
# 4. clean-up when the test does not stop its cluster itself

SKIP:
{
	skip 'no clusters are started here (CDC_RELAY_KAFKA_BROKERS is set)', 4 if $k1->external;

	# child scripts print "CLUSTER dir pid running" once their cluster is up (Test::More's
	# notes go to stdout too)
	my @inc = map { "-I$_" } grep { !ref } @INC;
	my $started = 'use KafkaCluster; my $k = KafkaCluster->start(nodes => 1); $| = 1; '
	  . 'my $p = $k->pid(1); print "CLUSTER $k->{dir} $p ", (-d $k->{dir} && kill(0, $p) ? 1 : 0), "\n"; ';
	my $marker = qr/^CLUSTER (\S+) (\d+) ([01])$/m;

	# a test script that dies with a running cluster: its END block stops it
	my ($out, $err) = ('', '');
	timed('a dying script: start + END clean-up',
		sub { IPC::Run::run([ $^X, @inc, '-e', $started . 'die "on purpose\n";' ],
				'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(180)) });
	my ($dir, $pid, $running) = $out =~ $marker;
	ok($running && $err =~ /on purpose/, 'a dying script: its cluster ran, then it died')
	  or diag("stdout: $out\nstderr: $err");
	ok($dir && !-e $dir && !alive($pid), 'its END block stopped the cluster and removed the directory');

	# a test script killed with SIGKILL: the watcher stops its cluster
	($out, $err) = ('', '');
	my $h = IPC::Run::start([ $^X, @inc, '-e', $started . 'sleep 600;' ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(180));
	$h->pump until $out =~ $marker || !$h->pumpable;
	($dir, $pid, $running) = $out =~ $marker;
	ok($running && alive($pid), 'a script to be killed: its cluster runs') or diag("stdout: $out\nstderr: $err");
	$h->signal('KILL');
	eval { $h->finish };
	ok($dir && timed('watcher clean-up after SIGKILL of the owner',
			sub { wait_until(sub { !-e $dir && !alive($pid) }, 'the watcher to stop the orphaned cluster', 60) }),
		'after SIGKILL of the script, the watcher stopped its cluster and removed the directory');
}

push @timings, sprintf('%-44s %6.1f s', 'whole file', time() - $t_all);
diag("timings:\n" . join("\n", map { "  $_" } @timings));
done_testing();
