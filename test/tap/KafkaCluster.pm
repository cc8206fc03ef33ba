# test/tap/KafkaCluster.pm: real Apache Kafka clusters for the TAP tests, started and
# stopped through test/kafka/cluster.sh (KRaft, 1 or 3 nodes on free 127.0.0.1 ports).
#
#   use KafkaCluster;
#   my $k = KafkaCluster->start(nodes => 3, conf => ['auto.create.topics.enable=false']);
#   $k->create_topic('t', partitions => 1, replication => 3,
#                    config => { 'min.insync.replicas' => 2 });
#   my @msgs = consume($k, 't');          # RelayTest's helpers take $k or $k->{bootstrap}
#   SKIP: { $k->kill_node(2); ...; $k->restart_node(2); }
#   $k->stop;
#
# Every cluster started here is stopped (and its directory removed) in an END block,
# also when the test died; if the test process is killed outright, cluster.sh's watcher
# stops it within seconds (CDC_RELAY_KAFKA_OWNER).
#
# With $ENV{CDC_RELAY_KAFKA_BROKERS} set (a bootstrap list), start() starts nothing and
# returns an object for that existing cluster: {external} is true, nodes and conf are
# ignored, stop does nothing, and kill_node/restart_node skip (Test::More::skip), so
# call them inside a SKIP block.
package KafkaCluster;

use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use IPC::Run;
use Test::More;
use Time::HiRes qw(time);

# cluster.sh next to this file: the TAP scratch directory holds a copy in kafka/,
# the repository has it in ../kafka/
my $harness;
{
	my $here = dirname(File::Spec->rel2abs(__FILE__));
	($harness) = grep { -f $_ } ("$here/kafka/cluster.sh", "$here/../kafka/cluster.sh");
}

my @clusters;    # started here and not yet stopped
my $counter = 0;

=pod

=item KafkaCluster->start(nodes => 1 | 3, conf => [LINE, ...], timeout => SECONDS)

Starts a cluster (cluster.sh start; it waits until kcat -L lists every broker) and
returns {bootstrap => "127.0.0.1:P1,...", dir => DIR, nodes => N, seconds => start-up
time}.  conf lines are appended to every node's server.properties.  Dies (with the
node logs in a diag) when the cluster does not come up.  cluster.sh's stderr goes to
tmp_check/log/kafka_<n>.log when run under PostgreSQL::Test::Utils.

=cut

sub start
{
	my ($class, %opt) = @_;
	my $nodes = $opt{nodes} // 1;
	if (my $ext = $ENV{CDC_RELAY_KAFKA_BROKERS})
	{
		note("using the existing Kafka cluster CDC_RELAY_KAFKA_BROKERS=$ext (nodes => $nodes and conf ignored)");
		return bless { bootstrap => $ext, external => 1, nodes => undef }, $class;
	}
	die "KafkaCluster: test/kafka/cluster.sh not found next to " . __FILE__ . "\n" unless $harness;
	my @cmd = ('bash', $harness, 'start', $nodes, @{ $opt{conf} // [] });
	my ($out, $err) = ('', '');
	my $t0 = time();
	local $ENV{CDC_RELAY_KAFKA_OWNER} = $$;
	my $ok = eval {
		IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err,
			IPC::Run::timeout($opt{timeout} // 300, name => 'cluster.sh start'));
	};
	my $seconds = time() - $t0;
	_save_log("# @cmd\n$err");
	my ($bootstrap, $dir) = split /\n/, $out;
	if (!$ok || !$dir)
	{
		diag("cluster.sh start $nodes failed" . ($@ ? ": $@" : '') . ":\n$err");
		die "KafkaCluster: could not start a $nodes-node Kafka cluster\n";
	}
	my $self = bless { bootstrap => $bootstrap, dir => $dir, nodes => $nodes, seconds => $seconds },
	  $class;
	push @clusters, $self;
	note(sprintf("Kafka: %d node(s) at %s in %.1f s (%s)", $nodes, $bootstrap, $seconds, $dir));
	return $self;
}

sub _save_log
{
	my ($text) = @_;
	no warnings 'once';
	my $dir = $PostgreSQL::Test::Utils::log_path or return;
	$counter++;
	if (open(my $fh, '>>', "$dir/kafka_$counter.log"))
	{
		print $fh $text;
		close $fh;
	}
}

# _cluster_sh(SECONDS, ARGS...): runs cluster.sh; returns (ok, stdout, stderr)
sub _cluster_sh
{
	my ($timeout, @args) = @_;
	my ($out, $err) = ('', '');
	my $ok = eval {
		IPC::Run::run([ 'bash', $harness, @args ], '<', \undef, '>', \$out, '2>', \$err,
			IPC::Run::timeout($timeout, name => "cluster.sh $args[0]"));
	};
	$err .= $@ if $@;
	_save_log("# cluster.sh @args\n$err");
	return ($ok, $out, $err);
}

=pod

=item $k->external

True for a cluster given by CDC_RELAY_KAFKA_BROKERS (not started here).

=item $k->pid($i)

The process id of node $i's JVM (undef for an external cluster).

=item $k->kill_node($i [, skip => N])

kill -9 of node $i; returns once the process is gone.  On an external cluster:
Test::More::skip(why, N) (N defaults to 1), so call it inside a SKIP block.

=item $k->restart_node($i [, skip => N])

Starts node $i again (same data and ports) and returns once kcat -L lists it;
dies when it does not come back.  On an external cluster: skip, as above.

=cut

sub external { return $_[0]{external} ? 1 : 0; }

sub pid
{
	my ($self, $i) = @_;
	return undef if $self->{external};
	open(my $fh, '<', "$self->{dir}/n$i.pid") or return undef;
	my $pid = <$fh>;
	close $fh;
	chomp $pid if defined $pid;
	return $pid;
}

sub _node_control
{
	my ($self, $what, $i, %opt) = @_;
	if ($self->{external})
	{
		Test::More::skip("cannot $what node $i of an existing cluster (CDC_RELAY_KAFKA_BROKERS="
			  . "$self->{bootstrap}): it was not started by this test", $opt{skip} // 1);
	}
	my ($ok, $out, $err) = _cluster_sh(300, $what, $self->{dir}, $i);
	die "KafkaCluster: cluster.sh $what $i failed:\n$err" unless $ok;
	note("Kafka: $what node $i done");
	return 1;
}

sub kill_node { my ($self, $i, %opt) = @_; return $self->_node_control('kill', $i, %opt); }

sub restart_node { my ($self, $i, %opt) = @_; return $self->_node_control('restart', $i, %opt); }

=pod

=item $k->stop

Stops every node (SIGTERM, SIGKILL after 10 s) and removes the cluster's directory.
Returns 1 when cluster.sh stop succeeded.  Idempotent; nothing for an external cluster.

=cut

sub stop
{
	my ($self) = @_;
	return 1 if $self->{external} || $self->{stopped};
	$self->{stopped} = 1;
	@clusters = grep { $_ != $self } @clusters;
	my ($ok, $out, $err) = _cluster_sh(60, 'stop', $self->{dir});
	diag("cluster.sh stop $self->{dir} failed:\n$err") unless $ok;
	return $ok ? 1 : 0;
}

=pod

=item $k->create_topic($name, partitions => N, replication => N, config => {name => value})

Creates a topic through Kafka's Admin client (cluster.sh admin ... create-topic) and
waits until every partition has a leader.  Defaults: 1 partition, replication 1.
Dies on failure (an existing topic is one).

=item $k->create_topics([$name, %opt], ...)

create_topic for several topics, their Admin client processes run side by side
(each costs a JVM start: about 1.5 s of CPU).  Dies when any of them failed.

=item $k->topic_configs($name)

The topic's configs as {name => value} (cluster.sh admin ... configs); dies on failure.

=cut

=pod

=item KafkaCluster::fast_compaction()

Topic configs with which the log cleaner compacts within seconds (real-kafka.md
section 1.5): cleanup.policy=compact, segment.ms=100, min.cleanable.dirty.ratio=0.01,
min.compaction.lag.ms=0, delete.retention.ms=1000 (tombstones), file.delete.delay.ms=1000.
Returns a new hash reference each time.

=cut

sub fast_compaction
{
	return {
		'cleanup.policy' => 'compact',
		'segment.ms' => 100,
		'min.cleanable.dirty.ratio' => 0.01,
		'min.compaction.lag.ms' => 0,
		'delete.retention.ms' => 1000,
		'file.delete.delay.ms' => 1000 };
}

sub create_topic
{
	my ($self, $name, %opt) = @_;
	my %conf = %{ $opt{config} // {} };
	my ($ok, $out, $err) = _cluster_sh(120, 'admin', $self->{bootstrap}, 'create-topic', $name,
		$opt{partitions} // 1, $opt{replication} // 1, map { "$_=$conf{$_}" } sort keys %conf);
	die "KafkaCluster: creating topic $name failed:\n$err" unless $ok;
	return 1;
}

sub create_topics
{
	my ($self, @topics) = @_;
	my @runs;
	for my $t (@topics)
	{
		my ($name, %opt) = @$t;
		my %conf = %{ $opt{config} // {} };
		my @args = ('admin', $self->{bootstrap}, 'create-topic', $name, $opt{partitions} // 1,
			$opt{replication} // 1, map { "$_=$conf{$_}" } sort keys %conf);
		my $r = { name => $name, args => \@args, out => '', err => '' };
		$r->{h} = IPC::Run::start([ 'bash', $harness, @args ], '<', \undef, '>', \$r->{out}, '2>', \$r->{err},
			IPC::Run::timeout(120, name => "cluster.sh admin create-topic $name"));
		push @runs, $r;
	}
	my @failed;
	for my $r (@runs)
	{
		my $ok = eval { $r->{h}->finish };
		if ($@)
		{
			$r->{err} .= $@;
			eval { $r->{h}->kill_kill(grace => 1) };
		}
		_save_log("# cluster.sh @{ $r->{args} }\n$r->{err}");
		push @failed, "$r->{name}:\n$r->{err}" unless $ok;
	}
	die "KafkaCluster: creating topics failed: " . join("\n", @failed) . "\n" if @failed;
	return 1;
}

=item $k->partitions($topic)

The topic's partitions as kcat -L shows them: {partition => {leader => N (-1: none),
isr => [node, ...] (sorted)}}; {} when kcat does not list the topic.

=item $k->end_offsets($topic [, isolation => LEVEL])

{partition => end offset} of every partition of the topic (kcat -Q): with isolation =>
'read_uncommitted' the high watermark, else (read_committed, librdkafka's default) the
last stable offset, below the first message of a transaction still open.  Both count
the transaction markers, which take an offset each.

=item $k->open_transaction(@topics)

True when a partition of one of the topics holds messages of a Kafka transaction not
yet committed or aborted (its last stable offset is below its high watermark).  The
two offsets are read one after the other: meaningful only while nothing writes to the
topics (the producer stopped, for instance).

=cut

sub partitions
{
	my ($self, $topic) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'kcat', '-L', '-b', $self->{bootstrap}, '-t', $topic, '-m', '5' ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	my %p;
	$p{$1} = { leader => $2, isr => [ sort { $a <=> $b } split /,/, $3 ] }
	  while $out =~ /partition (\d+), leader (-?\d+), replicas: [\d,]*, isrs: ([\d,]*)/g;
	return \%p;
}

sub end_offsets
{
	my ($self, $topic, %opt) = @_;
	my @p = sort { $a <=> $b } keys %{ $self->partitions($topic) };
	return {} unless @p;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'kcat', '-Q', '-b', $self->{bootstrap}, '-X',
			'isolation.level=' . ($opt{isolation} // 'read_committed'), map { ('-t', "$topic:$_:-1") } @p ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	my %o;
	$o{$1} = $2 while $out =~ /\[(\d+)\] offset (\d+)/g;
	return \%o;
}

sub open_transaction
{
	my ($self, @topics) = @_;
	for my $t (@topics)
	{
		my $lso = $self->end_offsets($t);
		my $hw = $self->end_offsets($t, isolation => 'read_uncommitted');
		return 1 if grep { ($lso->{$_} // 0) < $hw->{$_} } keys %$hw;
	}
	return 0;
}

sub topic_configs
{
	my ($self, $name) = @_;
	my ($ok, $out, $err) = _cluster_sh(120, 'admin', $self->{bootstrap}, 'configs', $name);
	die "KafkaCluster: reading the configs of topic $name failed:\n$err" unless $ok;
	return { map { split /=/, $_, 2 } split /\n/, $out };
}

END
{
	my $rc = $?;
	for my $k (reverse @clusters)
	{
		eval { $k->stop; };
	}
	$? = $rc;
}

1;
