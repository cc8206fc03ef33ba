# test/tap/115_kafka_topics.pl: the topics the relay creates, and the Kafka keys of
# messages about no single row, against a real Apache Kafka 4.4 broker (1-node KRaft
# cluster with auto.create.topics.enable=false, so every topic written is one the relay
# created or found).
#
#  (a) Start: the relay creates the state topic (compact, 1 partition), the messages
#      topic (delete) and a topic per captured table: compact for a table with a key
#      (primary key, replica identity index), delete for one without; the settings of
#      a config file (topic-partitions, topic-config) and of the command line
#      (--topic-replication-factor 1) are honoured, --topic-config only on table topics.
#      An existing topic is used as it is: a keyed table's topic with
#      cleanup.policy=delete gets a warning naming the fix, and so does a keyless
#      table's topic with cleanup.policy=compact.
#  (b) Streaming into the compacted topics, none of it refused by the broker: a
#      TRUNCATE (key "truncate"), an update whose key the WAL does not carry (TOAST key
#      column, REPLICA IDENTITY NOTHING: key "unknown", no tombstone), a delete under
#      REPLICA IDENTITY NOTHING (key "unknown", no tombstone), changes of a table
#      without a key (null keys, in its cleanup.policy=delete topic), a logical message
#      (key: its prefix); tables first seen while streaming (by a row or by a truncate)
#      get their topics created with the right policy.  The relay keeps running and
#      confirms past all of it.
#  (c) Bad settings: an unknown --topic-config, and a replication factor the cluster
#      cannot meet: exit 1 with one ERROR line naming the setting; no slot, no topic.
#  (d) The test broker (no CreateTopics; it never answers one): one line saying the
#      brokers auto-create the topics, and the relay does not wait for an answer.
# (A bootstrap list that is no Kafka is TAP 108's.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use IPC::Run;
use RelayTest;
use KafkaCluster;

my $json = JSON::PP->new->canonical;
my $node = logical_node('topics');
$node->safe_psql('postgres', q{
CREATE EXTENSION cdc_relay;
CREATE TABLE kt (id int PRIMARY KEY, v text);
INSERT INTO kt SELECT g, 'seed ' || g FROM generate_series(1, 20) g;
CREATE TABLE nk (a int, b text);
INSERT INTO nk SELECT g, 'seed ' || g FROM generate_series(1, 5) g;
CREATE TABLE ri (id int NOT NULL, code text NOT NULL, PRIMARY KEY (id));
CREATE UNIQUE INDEX ri_code ON ri (code);
ALTER TABLE ri REPLICA IDENTITY USING INDEX ri_code;
CREATE TABLE tk (k text PRIMARY KEY, v int);
ALTER TABLE tk ALTER COLUMN k SET STORAGE EXTERNAL;
ALTER TABLE tk REPLICA IDENTITY NOTHING;
CREATE TABLE rn (id int PRIMARY KEY, v text);
ALTER TABLE rn REPLICA IDENTITY NOTHING;
INSERT INTO rn VALUES (1, 'one'), (2, 'two');
CREATE TABLE trunc (id int PRIMARY KEY);
INSERT INTO trunc SELECT generate_series(1, 3);
CREATE TABLE pre (id int PRIMARY KEY);
CREATE TABLE pre_nk (a int);
});
sub sql { return $node->safe_psql('postgres', $_[0]); }

my $k = KafkaCluster->start(nodes => 1, conf => ['auto.create.topics.enable=false']);
# topic names of this run only, so that an existing cluster (CDC_RELAY_KAFKA_BROKERS) serves
my $p = sprintf('t115_%d_%d', $$, time() % 100000);
note("Kafka at $k->{bootstrap}, topic prefix $p");

# kcat -L: {topic => partition count}
sub partitions
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'kcat', '-b', $k->{bootstrap}, '-L', '-m', '10' ], '<', \undef, '>', \$out, '2>', \$err)
	  or die "kcat -L failed: $err";
	return { map { /^\s*topic "(.*)" with (\d+) partitions/ ? ($1 => $2) : () } split /\n/, $out };
}

# ---- (a) the topics created at start, and existing ones --------------------------------
$k->create_topic("$p.public.pre", config => { 'cleanup.policy' => 'delete' });
$k->create_topic("$p.public.pre_nk", config => { 'cleanup.policy' => 'compact' });
my $conf = "$PostgreSQL::Test::Utils::tmp_check/115.conf";
open(my $fh, '>', $conf) or die "$conf: $!";
print $fh "topic-partitions = 3\ntopic-config = retention.ms=86400000   # one day\n";
close $fh;
my @args = ('-S', 'topics', '--topic-prefix', $p, '--heartbeat-interval', '0', '-c', $conf,
	'--topic-replication-factor', '1');
my $relay = start_relay($node, $k, @args);
ok($relay->wait_for_log(qr/streaming from slot "topics" into Kafka/), '(a) snapshot taken, then streaming');
my $log = $relay->log_content;
like($log, qr/INFO created 11 Kafka topics in \d+ ms: /, '(a) one CreateTopics: 11 topics created at start');

my %want = (
	"$p.__state" => [ 'compact', 1, undef ],
	"$p.messages" => [ 'delete', 3, undef ],
	"$p.transactions" => [ 'delete', 3, undef ],
	"$p.schemas" => [ 'compact', 3, undef ],
	"$p.ddl" => [ 'delete', 1, undef ],
	"$p.public.kt" => [ 'compact', 3, '86400000' ],
	"$p.public.ri" => [ 'compact', 3, '86400000' ],
	"$p.public.tk" => [ 'compact', 3, '86400000' ],
	"$p.public.rn" => [ 'compact', 3, '86400000' ],
	"$p.public.trunc" => [ 'compact', 3, '86400000' ],
	"$p.public.nk" => [ 'delete', 3, '86400000' ],);
my $parts = partitions();
for my $t (sort keys %want)
{
	my ($policy, $n, $retention) = @{ $want{$t} };
	my $c = $k->topic_configs($t);
	is($c->{'cleanup.policy'}, $policy, "(a) $t: cleanup.policy=$policy");
	is($parts->{$t}, $n, "(a) $t: $n partition(s)");
	if (defined $retention)
	{
		is($c->{'retention.ms'}, $retention, "(a) $t: retention.ms from topic-config");
	}
	else
	{
		isnt($c->{'retention.ms'}, '86400000', "(a) $t: no --topic-config on the relay's own topics");
	}
}
is($k->topic_configs("$p.public.pre")->{'cleanup.policy'}, 'delete', '(a) an existing topic is used as it is');
like($log,
	qr/WARNING topic \Q$p\E\.public\.pre of table public\.pre, which has a key, has cleanup\.policy=delete: .*; fix: kafka-configs --bootstrap-server \S+ --alter --entity-type topics --entity-name \Q$p\E\.public\.pre --add-config cleanup\.policy=compact\n/,
	'(a) the keyed table\'s existing topic without compaction: a warning naming the fix');
like($log,
	qr/WARNING topic \Q$p\E\.public\.pre_nk of table public\.pre_nk, which has no key .* has cleanup\.policy=compact: Kafka refuses its changes .*; fix: kafka-configs .* --add-config cleanup\.policy=delete, or give the table a primary key\n/,
	'(a) the keyless table\'s existing topic with compaction: a warning naming the fix');
is(scalar(grep { / WARNING / && !/ librdkafka / } split /\n/, $log), 2, '(a) no other warnings of the relay');

# ---- (b) keyless messages into compacted topics, tables first seen while streaming ----
my $bigkey = '1234567890' x 250;
sql(qq{
INSERT INTO kt VALUES (100, 'new'); UPDATE kt SET v = 'changed' WHERE id = 1; DELETE FROM kt WHERE id = 2;
INSERT INTO nk VALUES (100, 'new'); DELETE FROM nk WHERE a = 1;
INSERT INTO tk VALUES ('$bigkey', 1);
UPDATE tk SET v = 2;
DELETE FROM rn WHERE id = 1;
TRUNCATE trunc;
SELECT pg_logical_emit_message(true, 'app.events', 'hello');
INSERT INTO ri VALUES (1, 'a');
CREATE TABLE late (id int PRIMARY KEY); INSERT INTO late VALUES (1);
CREATE TABLE late_nk (a int); INSERT INTO late_nk VALUES (1);
CREATE TABLE late_trunc (id int PRIMARY KEY); TRUNCATE late_trunc;
INSERT INTO kt VALUES (101, 'last');
});
my $end = sql('SELECT pg_current_wal_insert_lsn()');
ok(wait_for_confirmed($node, 'topics', $end), '(b) the relay confirms past all of it');
ok($relay->alive, '(b) ... and keeps running');
$log = $relay->log_content;
unlike($log, qr/ERROR|rejected/, '(b) no message refused, no error');

my @tk = consume($k, "$p.public.tk");
is_deeply([ map { $_->{key} } @tk ], [ qq({"k":"$bigkey"}), '"unknown"' ],
	'(b) tk: the insert under its key, the update whose key the WAL lacks under "unknown"');
my $upd = $json->decode($tk[1]{value} // '{}');
is($upd->{op}, 'u', '(b) ... which is the update');
ok(!defined $upd->{key} && ($upd->{key_unknown} // '') =~ /unchanged TOAST key column k not in the WAL/,
	'(b) ... with key null and key_unknown in the event');
is($tk[1]{headers}{op}, 'u', '(b) ... and its headers unchanged (op=u)');

my @rn = grep { ($_->{headers}{snapshot} // '') ne 'true' } consume($k, "$p.public.rn");
is_deeply([ map { [ $_->{key}, $_->{headers}{op} ] } @rn ], [ [ '"unknown"', 'd' ] ],
	'(b) rn: the delete under REPLICA IDENTITY NOTHING has the key "unknown", and no tombstone follows');

my @trunc = grep { ($_->{headers}{op} // '') eq 't' } consume($k, "$p.public.trunc");
is_deeply([ map { $_->{key} } @trunc ], ['"truncate"'], '(b) trunc: one truncate event, key "truncate"');

my @nk = consume($k, "$p.public.nk");
is(scalar(@nk), 7, '(b) nk: 5 snapshot rows, an insert and a delete');
ok(!grep({ defined $_->{key} } @nk), '(b) nk: null keys (its topic has cleanup.policy=delete)');

my @m = consume($k, "$p.messages");
is_deeply([ map { $_->{key} } @m ], ['app.events'], '(b) the logical message: key = its prefix');

my @kt = consume($k, "$p.public.kt");
my $last = last_by_key(\@kt);
is_deeply([ sort { $a <=> $b } map { /^\{"id":(\d+)\}$/ ? $1 : $_ } keys %$last ],
	[ 1, 3 .. 20, 100, 101 ], '(b) kt: the last record per key is the table\'s key set');
is(scalar(grep { !defined $_->{value} } @kt), 1, '(b) kt: the delete is followed by a tombstone');

my %late = ("$p.public.late" => 'compact', "$p.public.late_nk" => 'delete', "$p.public.late_trunc" => 'compact');
for my $t (sort keys %late)
{
	my $c = $k->topic_configs($t);
	is($c->{'cleanup.policy'}, $late{$t}, "(b) $t, first seen while streaming: created with cleanup.policy=$late{$t}");
	is($c->{'retention.ms'}, '86400000', "(b) $t: with the topic-config settings");
}
like($log, qr/INFO created Kafka topic \Q$p\E\.public\.late for table public\.late \(cleanup\.policy=compact\)/,
	'(b) one line per topic created while streaming');
my @lt = consume($k, "$p.public.late_trunc");
is_deeply([ map { [ $_->{key}, $_->{headers}{op} ] } @lt ], [ [ '"truncate"', 't' ] ], '(b) late_trunc: its truncate event');
is($relay->stop, 0, '(b) exit 0 on SIGTERM');

# ---- (c) settings Kafka refuses --------------------------------------------------------
for my $case ([ 'c1', [ '--topic-config', 'foo.bar=1' ], qr/Unknown topic config name: foo\.bar .*fix: correct or remove the setting --topic-config foo\.bar=1/ ],
	[ 'c2', [ '--topic-replication-factor', '99' ], qr/replication factor .*fix: set --topic-replication-factor to at most the number of brokers/ ])
{
	my ($c, $extra, $re) = @$case;
	my ($rc, $out, $err) = run_relay($node, $k, { timeout => 120 }, '-S', "bad_$c", '--topic-prefix', "$p-$c",
		'--heartbeat-interval', '0', @$extra);
	is($rc, 1, "(c) @$extra: exit 1");
	my @errors = grep { / ERROR / } split /\n/, $err;
	is(scalar(@errors), 1, "(c) @$extra: one ERROR line") or diag($err);
	like($errors[0] // '', $re, "(c) @$extra: it names the setting and the fix");
	is(sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'bad_$c'"), 0, "(c) @$extra: no slot created");
	is(scalar(grep { /^\Q$p-$c\E\./ } keys %{ partitions() }), 0, "(c) @$extra: no topic created");
}

# ---- (d) the test broker: no CreateTopics, auto-creation -------------------------------
{
	my $broker = start_broker();
	my ($rc, $out, $err) = run_relay($node, $broker, { timeout => 120 }, '-S', 'mock', '--topic-prefix', 'mock',
		'--snapshot', 'initial-only', '--topic-partitions', '2');
	is($rc, 0, '(d) test broker: the snapshot is taken');
	my @lines = grep { /sends it no topic administration requests/ } split /\n/, $err;
	is(scalar(@lines), 1, '(d) one line says the brokers create the topics');
	like($lines[0] // '', qr/WARNING Kafka at \S+ names controller 0, which is none of its brokers .*create the relay's topics on first use, with their own defaults \(--topic-partitions, --topic-replication-factor and --topic-config are not applied\)/,
		'(d) ... and that the topic settings are not applied');
	is(scalar(grep { $_->{headers}{op} eq 'r' } consume($broker, 'mock.public.kt')), sql('SELECT count(*) FROM kt'),
		'(d) the rows are there');
	$broker->stop;
}

$k->stop;
$node->stop;
done_testing();
