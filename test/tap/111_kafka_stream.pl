# test/tap/111_kafka_stream.pl: snapshot + streaming into a real Kafka 4.4 broker (a 1-node
# KRaft cluster, test/kafka/cluster.sh) under concurrent writers.
#
# Three tables (about 16,000 rows before the relay starts):
#   accounts   int primary key
#   lines      composite primary key (order_id, line_no); updates move rows to another key
#   moves      int primary key; updates give rows a new key (nextval), inserts, deletes
# Two pgbench clients (a custom script, --rate-limited so the amount is bounded) commit
# transactions that each touch all three tables: upserts, deletes, primary-key changes.
# They start before the relay and run through its snapshot (--snapshot-jobs 2) and for a
# while of streaming; then they stop, the position pg_current_wal_insert_lsn() is recorded
# and we wait until the slot's confirmed_flush_lsn reaches it.  SIGTERM ends the relay with
# exit 0.  The table topics (3 partitions each, cleanup.policy=compact) and the state topic
# are created before the relay starts (the relay on main does not create topics).
#
# An audit slot (the cdc_relay plugin, created before the writers start, read with
# pg_logical_slot_peek_changes) is the independent record of every change committed.  kcat
# reads every topic, and:
#   - each change the audit slot holds that committed at or after the relay's consistent
#     point is in Kafka, in its table's topic, the value byte for byte the plugin's JSON;
#     copies (at-least-once replays) are identical; Kafka holds no other change;
#   - per key, Kafka order is commit order (RelayTest::check_key_order, from the headers
#     commit_lsn and event_id): the snapshot row first, then changes in (commit_lsn, seq)
#     order, a step back only for a replay; each delete is followed by a tombstone;
#   - the last record per key equals each table (a primary-key change leaves the old key
#     deleted);
#   - the workload really did what it is meant to: snapshot rows and changes, keys with
#     both, deletes, primary-key changes, transactions spanning tables.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use RelayTest;
use KafkaCluster;

my $t_start = time();
my $node = logical_node('kstream', 'max_connections = 30');
my %shop = (accounts => 6000, orders => 1500, moves => 4000);
$node->safe_psql('postgres', 'CREATE EXTENSION cdc_relay');
shop_tables($node, 'postgres', %shop);
$node->safe_psql('postgres', q{SELECT pg_create_logical_replication_slot('audit', 'cdc_relay')});

# topic names unique per run: an existing cluster (CDC_RELAY_KAFKA_BROKERS) may serve many
my $prefix = "kstream$$";
my %tables = (
	accounts => [ 'accounts', ['id'] ],
	lines => [ 'lines', [ 'order_id', 'line_no' ] ],
	moves => [ 'moves', ['id'] ]);
my $k = KafkaCluster->start(nodes => 1);
$k->create_topics((map { [ "$prefix.public.$_", partitions => 3, config => { 'cleanup.policy' => 'compact' } ] }
			sort keys %tables),
	[ "$prefix.__state", config => { 'cleanup.policy' => 'compact' } ]);
note(sprintf('Kafka started and topics created in %.1f s', time() - $t_start));


sub insert_lsn { return RelayTest::insert_lsn($node); }
sub wal_grew { return RelayTest::wal_grew($node, @_); }

# pgbench writers (RelayTest::shop_writers: upserts, deletes and primary-key changes
# in transactions touching the three tables)
my $writers = shop_writers($node, 'postgres', %shop, pgbench => [ '-T', '600', '-R', '300' ]);
my $lsn0 = insert_lsn();
ok(wait_until(sub { wal_grew($lsn0, 200000) }, 'writers to write WAL'), 'writers commit before the relay starts');

my $relay = start_relay($node, $k, '--topic-prefix', $prefix, '--snapshot-jobs', '2');
ok($relay->wait_for_log(qr/snapshot complete:/), 'snapshot completes while the writers run')
  or BAIL_OUT('no snapshot');
ok($writers->alive, 'writers still running after the snapshot');
my ($cp) = $relay->log_content =~ /created replication slot "cdc_relay", consistent point (\S+?),/;
ok(defined $cp, 'consistent point logged: ' . ($cp // 'none'));
ok($relay->wait_for_log(qr/streaming from slot "cdc_relay" into Kafka/), 'then the relay streams');

# streaming under the writers for a while, then they stop
my $lsn1 = insert_lsn();
ok(wait_until(sub { wal_grew($lsn1, 3000000) }, 'writers to write after the snapshot'),
	'writers wrote 3 MB of WAL after the snapshot');
ok($writers->alive, 'writers ran all along');
$writers->kill('TERM');
$writers->finish;
unlike($writers->log_content, qr/aborted|ERROR/, 'no pgbench client aborted');
my $endpos = insert_lsn();
ok(wait_for_confirmed($node, 'cdc_relay', $endpos), "confirmed_flush_lsn reaches $endpos");
is($relay->stop, 0, 'relay exits 0 on SIGTERM');
# (librdkafka's own transient warnings aside, e.g. "Coordinator load in progress" while
# the fresh broker loads its transaction state)
unlike(join("\n", grep { !/ WARNING librdkafka / } split /\n/, $relay->log_content),
	qr/ERROR|WARNING/, 'no error or warning in the relay log');

# ---- what Kafka holds ------------------------------------------------------------------------
my $t_check = time();
my ($msgs, $all) = consume_tables($k, $prefix, sort keys %tables);
my %msgs = %$msgs;
my @all = @$all;
note(sprintf('%d messages read in %.1f s', scalar(@all), time() - $t_check));

for my $t (sort keys %tables)
{
	my ($errors, $st) = check_key_order($msgs{$t}, cp => $cp);
	is(scalar(@$errors), 0, "$t: per-key order is commit order, headers agree, tombstones after deletes")
	  or diag(join("\n", @$errors[ 0 .. ($#$errors < 9 ? $#$errors : 9) ]));
	note("$t: " . join(', ', map { "$_ $st->{$_}" } sort keys %$st));
	ok($st->{r} > 0 && $st->{changes} > 0 && $st->{both} > 0,
		"$t: snapshot rows ($st->{r}), changes ($st->{changes}), keys with both ($st->{both})");
	ok($st->{deletes} > 0 && $st->{tombstones} >= $st->{deletes}, "$t: deletes ($st->{deletes}) and tombstones ($st->{tombstones})");
	ok($st->{moved} > 0, "$t: primary-key changes ($st->{moved})") if $t ne 'accounts';
	my ($sql, $keycols) = @{ $tables{$t} };
	compare_rows($t, kafka_rows($msgs{$t}), table_rows($node, $sql, $keycols));
}

# every change committed after the consistent point, and nothing else
my $st = is_delivered($node, 'audit', $cp, \@all, prefix => $prefix);
ok($st->{changes} > 5000, "the writers committed many changes after the consistent point ($st->{changes}; $st->{copies} copies in Kafka)");
my %tables_of;
for my $m (@all)
{
	my $lsn = $m->{headers}{commit_lsn};
	$tables_of{$lsn}{ $m->{topic} } = 1 if defined $lsn && ($m->{headers}{op} // '') ne 'r';
}
my $multi = grep { keys(%{ $tables_of{$_} }) >= 2 } keys %tables_of;
ok($multi > 100, "transactions spanning tables ($multi of " . scalar(keys %tables_of) . ')');
note(sprintf('checks took %.1f s', time() - $t_check));

$node->safe_psql('postgres', "SELECT pg_drop_replication_slot('audit')");
$k->stop;
$node->stop;
diag(sprintf('111_kafka_stream: %.0f s', time() - $t_start));
done_testing();
