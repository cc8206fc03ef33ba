# test/tap/112_kafka_compaction.pl: log compaction of the relay's topics in a real Kafka 4.4
# broker (1-node KRaft cluster) leaves exactly the table: one record per live row, equal to
# it, and nothing of deleted rows once the tombstones' delete.retention.ms has passed.
#
# Three tables: accounts (int key), lines (composite key, rows moved to another key),
# moves (rows given a new key with nextval).  Their topics (2 partitions each) are created
# before the relay starts with cleanup.policy=compact and settings that make the cleaner work
# within seconds (segment.ms=100, min.cleanable.dirty.ratio=0.01, min.compaction.lag.ms=0,
# delete.retention.ms=1000, file.delete.delay.ms=1000; the broker's cleaner wakes every
# 0.5 s, test/kafka/cluster.sh).  The relay snapshots the tables, then streams a workload:
# two pgbench clients (upserts, deletes, key changes), then updates of every row, deletes of
# whole ranges and more key changes, so that the topics hold many records per key,
# tombstones after deletes and tombstones of moved keys.  The test checks that this is so
# before any cleaning.
#
# Then it forces segment rolls and waits for the cleaner.  The traps (see 110_kafka_harness.pl):
# the active segment is never cleaned; a time-based roll happens only on the next append;
# the first cleaning keeps tombstones and starts their delete.retention.ms; Kafka 4.4 cleans
# a log again only when it is dirty again.  So, in rounds until the topics are compacted
# (deadline 120 s): wait 1.1 s (> segment.ms, > delete.retention.ms), insert a few new rows
# into each table (new keys, one record each: what stays in the active segment is then a
# live row's only record) and wait until the relay confirmed them.  Finally, reading each
# table topic from offset 0 (kcat) gives exactly one record per row of the table, equal to
# the row (op c/u/r, "after" = the row), and no record (no tombstone, no delete event) of
# a deleted row or of a key a row moved away from.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use RelayTest;
use KafkaCluster;

my $t_start = time();
my $node = logical_node('kcompact', 'max_connections = 30');
my %shop = (accounts => 2000, orders => 500, moves => 1000);
$node->safe_psql('postgres', 'CREATE EXTENSION cdc_relay; CREATE SEQUENCE roll_seq START 10000000');
shop_tables($node, 'postgres', %shop);

my $prefix = "kcompact$$";
my %tables = (
	accounts => [ 'accounts', ['id'] ],
	lines => [ 'lines', [ 'order_id', 'line_no' ] ],
	moves => [ 'moves', ['id'] ]);
my %fast = %{ KafkaCluster::fast_compaction() };
my $k = KafkaCluster->start(nodes => 1);
$k->create_topics((map { [ "$prefix.public.$_", partitions => 2, config => \%fast ] } sort keys %tables),
	[ "$prefix.__state", config => { 'cleanup.policy' => 'compact' } ]);
my $conf = $k->topic_configs("$prefix.public.accounts");
is_deeply({ map { ($_ => $conf->{$_}) } keys %fast }, \%fast, 'the table topics have the compaction settings');
note(sprintf('Kafka started and topics created in %.1f s', time() - $t_start));

sub sql { return $node->safe_psql('postgres', $_[0]); }
sub insert_lsn { return sql('SELECT pg_current_wal_insert_lsn()'); }

my $relay = start_relay($node, $k, '--topic-prefix', $prefix);
ok($relay->wait_for_log(qr/streaming from slot "cdc_relay" into Kafka/), 'snapshot taken, relay streams')
  or BAIL_OUT('relay did not start');

# ---- the workload ----------------------------------------------------------------------------
my $writers = shop_writers($node, 'postgres', %shop, pgbench => [ '-t', '1000' ]);
is($writers->finish, 0, 'pgbench: 2 x 1000 transactions');
sql(q{
UPDATE accounts SET balance = balance + 1;
DELETE FROM accounts WHERE id % 3 = 0;
UPDATE lines SET qty = qty + 1;
DELETE FROM lines WHERE order_id % 4 = 0;
UPDATE lines SET line_no = line_no + 100 WHERE order_id % 4 = 1 AND line_no < 100;
UPDATE moves SET id = nextval('moves_id_seq') WHERE id % 2 = 0;
DELETE FROM moves WHERE id % 5 = 0;
UPDATE moves SET v = v || '+';
});
my $end = insert_lsn();
ok(wait_for_confirmed($node, 'cdc_relay', $end), 'the workload is confirmed');

# ---- before cleaning: duplicates, deletes, tombstones ----------------------------------------
my (%deleted, %before);
for my $t (sort keys %tables)
{
	my @msgs = consume($k, "$prefix.public.$t");
	my ($errors, $st) = check_key_order(\@msgs);
	is(scalar(@$errors), 0, "$t: per-key order, tombstones after deletes")
	  or diag(join("\n", @$errors[ 0 .. ($#$errors < 9 ? $#$errors : 9) ]));
	my $live = sql("SELECT count(*) FROM $tables{$t}[0]");
	# keys Kafka has seen that are no row now: deleted, or moved away from
	my $rows = table_rows($node, @{ $tables{$t} });
	$deleted{$t} = { map { ($_ => 1) } grep { !exists $rows->{$_} }
		  map { RelayTest::canonical_key($_->{key}) } grep { defined $_->{key} } @msgs };
	$before{$t} = scalar(@msgs);
	ok($st->{messages} > 2 * $live && $st->{tombstones} > 100 && keys(%{ $deleted{$t} }) > 100,
		"$t before cleaning: $st->{messages} records for $live rows, $st->{tombstones} tombstones, "
		  . scalar(keys %{ $deleted{$t} }) . " keys of deleted or moved rows");
	ok($st->{moved} > 50, "$t: primary-key changes ($st->{moved})") if $t ne 'accounts';
}

# ---- rolls and the cleaner ---------------------------------------------------------------------
# compacted($t): (1 if the topic is exactly the table, what it holds)
sub compacted
{
	my ($t) = @_;
	my @msgs = consume($k, "$prefix.public.$t");
	my $rows = table_rows($node, @{ $tables{$t} });
	my %n;
	$n{ defined $_->{key} ? $_->{key} : '(null)' }++ for @msgs;
	my $null = grep { !defined $_->{value} || ($_->{headers}{op} // '') !~ /^[cur]$/ } @msgs;
	my $kafka = kafka_rows(\@msgs);
	my $same = keys(%$kafka) == keys(%$rows) && !grep { ($kafka->{$_} // '') ne $rows->{$_} } keys %$rows;
	my $ok = @msgs == keys(%$rows) && !$null && $same;
	return ($ok, sprintf('%d records for %d rows, %d tombstones or delete events, %s',
			scalar(@msgs), scalar(keys %$rows), $null, $same ? 'last per key equals the table' : 'differs from the table'),
		\@msgs, $rows);
}

my $round = 0;
my $t_roll = time();
my %state;
my $done = wait_until(
	sub {
		my $all = 1;
		for my $t (sort keys %tables)
		{
			my ($ok, $what) = compacted($t);
			$state{$t} = $what;
			$all &&= $ok;
		}
		return 1 if $all;
		sleep(1.1);
		$round++;
		# new keys only: each is a live row's only record
		sql(q{
INSERT INTO accounts SELECT nextval('roll_seq'), 0, 'roll' FROM generate_series(1, 16);
INSERT INTO lines SELECT nextval('roll_seq'), 1, 0, 'roll' FROM generate_series(1, 16);
INSERT INTO moves (v) SELECT 'roll' FROM generate_series(1, 16);
});
		wait_for_confirmed($node, 'cdc_relay', insert_lsn(), 30);
		return 0;
	},
	'the cleaner to compact the table topics',
	120);
note(sprintf('compaction: %d rounds of rolls, %.1f s', $round, time() - $t_roll));
ok($done, "the topics were compacted after $round rounds of segment rolls")
  or diag(join("\n", map { "$_: $state{$_}" } sort keys %state));

for my $t (sort keys %tables)
{
	my ($ok, $what, $msgs, $rows) = compacted($t);
	note("$t: $what (before cleaning: $before{$t} records)");
	my %n;
	$n{ $_->{key} // '(null)' }++ for @$msgs;
	my @dup = grep { $n{$_} > 1 } sort keys %n;
	is(scalar(@dup), 0, "$t: exactly one record per key") or diag("keys with several records: @dup[0 .. ($#dup < 9 ? $#dup : 9)]");
	is(scalar(@$msgs), scalar(keys %$rows), "$t: as many records as rows (" . scalar(keys %$rows) . ')');
	my @bad = grep { !defined $_->{value} || ($_->{headers}{op} // '') !~ /^[cur]$/ } @$msgs;
	is(scalar(@bad), 0, "$t: no tombstone or delete event left");
	my @stale = grep { $deleted{$t}{ RelayTest::canonical_key($_->{key}) } } grep { defined $_->{key} } @$msgs;
	is(scalar(@stale), 0, "$t: no record of the " . scalar(keys %{ $deleted{$t} }) . ' deleted or moved-away keys')
	  or diag('for example ' . join(' ', map { $_->{key} } @stale[ 0 .. ($#stale < 4 ? $#stale : 4) ]));
	compare_rows("$t compacted", kafka_rows($msgs), $rows);
}

is($relay->stop, 0, 'relay exits 0 on SIGTERM');
$k->stop;
$node->stop;
diag(sprintf('112_kafka_compaction: %.0f s', time() - $t_start));
done_testing();
