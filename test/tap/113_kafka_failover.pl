# test/tap/113_kafka_failover.pl: the relay through broker failures of a real 3-node Kafka 4.4
# cluster (KRaft, every node broker and controller), with topics of replication factor 3
# and min.insync.replicas=2 (created before the relay starts), under a pgbench load.
#
#  1. kill -9 of node A, the leader of the busiest partition of the busiest table topic:
#     leadership moves, acks=all goes on with 2 of 3 replicas; the relay confirms changes
#     committed after the kill, without a restart.
#  2. kill -9 of a second node B while A is down: one node of three is left, the cluster
#     has no quorum (controllers) and no min.insync.replicas (acks=all cannot complete).
#     For 20 s the slot's confirmed_flush_lsn is sampled every 0.5 s: it must never pass
#     the WAL insert position taken right after the kill (nothing committed after it can
#     have been acknowledged by the cluster), while the writers go on committing.
#     Deliveries never time out (the relay sets message.timeout.ms=0 and refuses any
#     other value: a timed-out delivery can leave a gap that later messages fill, and
#     the replay would put a key's older changes after newer ones, which an earlier
#     version of this test caught in about half of its runs): the relay waits, its queue
#     fills and it stops reading; no delivery fails.
#  3. B restarts (quorum back): the relay recovers by itself (same process, still
#     running) and confirms the changes committed during the outage.
#  4. A restarts later; the writers stop; the relay confirms the end position and exits
#     0 on SIGTERM.
# Then, from what kcat reads:
#   - nothing lost: every change an audit slot (cdc_relay plugin, created before the
#     writers, read with pg_logical_slot_peek_changes) holds from the relay's consistent
#     point on is in Kafka, byte for byte, in its table's topic; copies (replays) are
#     identical; Kafka holds no other change;
#   - per key, Kafka order is commit order (a step back only for a replay), each delete
#     followed by a tombstone;
#   - the last record per key equals each table.
# Needs nodes this test starts: skipped with CDC_RELAY_KAFKA_BROKERS.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use RelayTest;
use KafkaCluster;

plan skip_all => 'kills brokers: needs a cluster this test starts (CDC_RELAY_KAFKA_BROKERS is set)'
  if $ENV{CDC_RELAY_KAFKA_BROKERS};

my $t_start = time();
my @timings;

# timed($what, $code): runs $code, remembers how long it took
sub timed
{
	my ($what, $code) = @_;
	my $t0 = time();
	my @r = $code->();
	push @timings, sprintf('%-50s %6.1f s', $what, time() - $t0);
	return wantarray ? @r : $r[0];
}

my $node = logical_node('kfailover', 'max_connections = 30');
my %shop = (accounts => 3000, orders => 750, moves => 2000);
$node->safe_psql('postgres', 'CREATE EXTENSION cdc_relay');
shop_tables($node, 'postgres', %shop);
$node->safe_psql('postgres', q{SELECT pg_create_logical_replication_slot('audit', 'cdc_relay')});

my $prefix = "kfail$$";
my %tables = (
	accounts => [ 'accounts', ['id'] ],
	lines => [ 'lines', [ 'order_id', 'line_no' ] ],
	moves => [ 'moves', ['id'] ]);
my $k = timed('3-node cluster start', sub { KafkaCluster->start(nodes => 3) });
my %rf3 = (replication => 3, config => { 'cleanup.policy' => 'compact', 'min.insync.replicas' => 2 });
timed('create 4 topics (replication 3)', sub {
	$k->create_topics((map { [ "$prefix.public.$_", partitions => 3, %rf3 ] } sort keys %tables),
		[ "$prefix.__state", %rf3 ]);
});

sub sql { return $node->safe_psql('postgres', $_[0]); }
sub insert_lsn { return sql('SELECT pg_current_wal_insert_lsn()'); }

my $writers = shop_writers($node, 'postgres', %shop, pgbench => [ '-T', '900', '-R', '150' ]);

my $relay = start_relay($node, $k, '--topic-prefix', $prefix);
ok($relay->wait_for_log(qr/streaming from slot "cdc_relay" into Kafka/), 'snapshot taken, relay streams')
  or BAIL_OUT('relay did not start');
my ($cp) = $relay->log_content =~ /created replication slot "cdc_relay", consistent point (\S+?),/;
ok(wait_for_confirmed($node, 'cdc_relay', insert_lsn(), 60), 'relay confirms the writers\' changes');

# ---- 1. kill -9 the leader of the busiest partition --------------------------------------
my ($busy_topic, $busy_p, $max) = (undef, undef, -1);
for my $t (sort keys %tables)
{
	my $o = $k->end_offsets("$prefix.public.$t");
	for my $p (sort keys %$o)
	{
		($busy_topic, $busy_p, $max) = ("$prefix.public.$t", $p, $o->{$p}) if $o->{$p} > $max;
	}
}
my $node_a = $k->partitions($busy_topic)->{$busy_p}{leader} // -1;
ok($node_a >= 1 && $node_a <= 3, "the busiest partition, $busy_topic [$busy_p] ($max records), has leader node $node_a");
timed("kill -9 node $node_a (leader)", sub { $k->kill_node($node_a) });
my $after_a = insert_lsn();
ok(timed('leadership moves',
		sub { wait_until(sub { my $l = $k->partitions($busy_topic)->{$busy_p}{leader} // -1; $l >= 1 && $l != $node_a },
				'a new leader', 60) }),
	"leadership of $busy_topic [$busy_p] moved off node $node_a");
ok(timed('relay confirms after the leader kill', sub { wait_for_confirmed($node, 'cdc_relay', $after_a, 120) }),
	"the relay confirms changes committed after node $node_a died ($after_a): acks=all with 2 of 3 replicas");
ok($relay->alive, 'the relay runs on');

# ---- 2. kill -9 a second node: no quorum for 20 s ----------------------------------------
my ($node_b) = grep { $_ != $node_a } 1 .. 3;
timed("kill -9 node $node_b (quorum lost)", sub { $k->kill_node($node_b) });
my $lost_at = insert_lsn();
my $confirmed_before = confirmed_flush($node, 'cdc_relay');
note("quorum lost: WAL insert position $lost_at, slot confirmed $confirmed_before");
my @samples;
my $t_lost = time();
while (time() - $t_lost < 20)
{
	push @samples, confirmed_flush($node, 'cdc_relay');
	sleep(0.5);
}
my @past = grep { lsn_cmp($_, $lost_at) > 0 } @samples;
my ($top) = sort { lsn_cmp($b, $a) } @samples;
is(scalar(@past), 0, "while the quorum is lost, confirmed_flush_lsn (" . scalar(@samples)
	  . " samples, highest $top) never passes $lost_at, the WAL position when it was lost")
  or diag("samples past it: @past");
my $during = insert_lsn();
ok(lsn_cmp($during, $lost_at) > 0 && sql("SELECT '$during'::pg_lsn - '$lost_at' > 100000") eq 't',
	"the writers committed meanwhile ($lost_at -> $during)");
ok($relay->alive, 'the relay is still running');

# ---- 3. the second node comes back: the relay recovers by itself --------------------------
timed("restart node $node_b (quorum back)", sub { $k->restart_node($node_b) });
ok(timed('relay confirms the outage\'s changes',
		sub { wait_for_confirmed($node, 'cdc_relay', $during, 180) }),
	"the relay confirms the changes committed during the outage (up to $during)");
ok($relay->alive, 'the relay recovered without a restart');
unlike($relay->log_content, qr/a Kafka delivery failed|Message timed out/,
	'no delivery failed during the outage: the relay waited for the cluster');

# ---- 4. the first node comes back later; the end -------------------------------------------
timed("restart node $node_a", sub { $k->restart_node($node_a) });
ok(timed('full ISR again', sub { wait_until(sub {
	my $p = $k->partitions($busy_topic);
	keys(%$p) == 3 && !grep { @{ $_->{isr} } != 3 } values %$p }, 'an ISR of 3 in every partition', 120) }),
	"node $node_a rejoined: every partition of $busy_topic has 3 in-sync replicas");
my $back = insert_lsn();
ok(wait_for_confirmed($node, 'cdc_relay', $back, 120), 'the relay confirms changes after both restarts');
ok($writers->alive, 'the writers ran all along');
$writers->kill('TERM');
$writers->finish;
unlike($writers->log_content, qr/aborted|ERROR/, 'no pgbench client aborted');
my $endpos = insert_lsn();
ok(wait_for_confirmed($node, 'cdc_relay', $endpos, 120), "confirmed_flush_lsn reaches the end ($endpos)");
is($relay->stop, 0, 'relay exits 0 on SIGTERM');
my @retries = $relay->log_content =~ /^.*(?:retry|reconnect|failed).*$/mig;
note('relay log lines about retries: ' . scalar(@retries) . (@retries ? "; first: $retries[0]" : ''));

# history(\@msgs, \@errors): the messages of the first two keys named in @errors (offset,
# producer timestamp, op, event_id), to see what was produced when
sub history
{
	my ($msgs, $errors) = @_;
	my %keys;
	for my $e (@$errors)
	{
		$keys{$1} = 1 if $e =~ /^key (\{.*?\}): / && keys(%keys) < 2;
	}
	my $out = '';
	for my $key (sort keys %keys)
	{
		$out .= "messages of key $key:\n";
		$out .= join('', map { sprintf("  partition %d offset %d %s %-9s %s\n", $_->{partition}, $_->{offset},
					RelayTest::_ts($_->{timestamp}), $_->{headers}{op} // '', $_->{headers}{event_id} // '') }
			  grep { ($_->{key} // '') eq $key } @$msgs);
	}
	return $out;
}

# ---- what Kafka holds -------------------------------------------------------------------------
my ($msgs, $all) = consume_tables($k, $prefix, sort keys %tables);
my %msgs = %$msgs;
my $st = is_delivered($node, 'audit', $cp, $all, prefix => $prefix,
	name => 'nothing lost: every change committed after the consistent point is in Kafka as the plugin wrote it, and nothing else');
note("$st->{changes} changes, $st->{copies} copies (replays) in Kafka");
ok($st->{changes} > 3000, "the writers committed many changes ($st->{changes})");
for my $t (sort keys %tables)
{
	my ($errors, $st) = check_key_order($msgs{$t}, cp => $cp);
	is(scalar(@$errors), 0, "$t: per-key order is commit order (steps back only for replays), tombstones after deletes")
	  or diag(join("\n", @$errors[ 0 .. ($#$errors < 9 ? $#$errors : 9) ]) . "\n" . history($msgs{$t}, $errors));
	note("$t: " . join(', ', map { "$_ $st->{$_}" } sort keys %$st));
	compare_rows($t, kafka_rows($msgs{$t}), table_rows($node, @{ $tables{$t} }));
}

sql("SELECT pg_drop_replication_slot('audit')");
$k->stop;
$node->stop;
push @timings, sprintf('%-50s %6.1f s', 'whole file', time() - $t_start);
diag("timings:\n" . join("\n", map { "  $_" } @timings));
done_testing();
