# test/tap/123_request_ids.pl: request ids (cdc_relay.set_request_id), domain events
# (cdc_relay.emit) and origin filtering (--origin none), end to end: real PostgreSQL,
# the real relay with --delivery exactly-once, a real 1-node Kafka cluster, read back
# by kcat in read_committed.
#
#  (a) Request ids: a transaction with set_request_id has the id in a request_id header
#      on every Kafka message it produced (insert, update, delete and its tombstone, the
#      domain event), and in its begin and end records of PREFIX.transactions (header and
#      value).  A client retry that commits twice appears as two transactions (two xids)
#      with one id: a consumer deduplicating by id finds the duplicate.  The next
#      transaction on the same connection has no request_id.
#  (b) Domain events: delivered to exactly the named topic, key = the key's text (a NULL
#      key: no key), value = the payload JSON; in commit order with the row changes of
#      the same transactions (by commit_lsn and seq in the event_id headers, across
#      topics); a rolled-back transaction's event (and rows) never appear.
#  (c) Exactly once: 400 transactions, each with a row and a domain event, while the
#      relay is killed with SIGKILL mid-stream and restarted: every key of the emit topic
#      exactly once in read_committed, each with its transaction's request id.
#  (d) A topic name that is not valid is refused in SQL; a domain event to one of the
#      relay's own topics stops the relay (exit 1), naming the transaction, the topic and
#      the fix, without confirming it; restarted with --emit-refused=skip it goes past
#      (the event dropped, logged), and later events are delivered.
#  (e) Origin: a transaction replayed with a replication origin (in a psql session with
#      pg_replication_origin_session_setup) is delivered by default, and left out with
#      --origin none, while local transactions are delivered.
#
# CDC_RELAY_REQID_DELIVERY=at-least-once runs the same checks in the other mode: the
# exactly-once checks of (c) and (d) can then fail (duplicates after the kill -9, the
# refused transaction's row visible), which is how one sees that they can.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use RelayTest;
use KafkaCluster;

my $t_start = time();
my $json = JSON::PP->new->canonical;
my $delivery = $ENV{CDC_RELAY_REQID_DELIVERY} // 'exactly-once';
my $node = logical_node('reqid');
my $k = KafkaCluster->start(nodes => 1);
note(sprintf('PostgreSQL and Kafka started in %.1f s', time() - $t_start));

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $prefix = 'rq';
my $otopic = "$prefix.public.orders";
my $etopic = 'app.orders.events';
my $ltopic = 'app.load';

sql(q{CREATE EXTENSION cdc_relay;
	CREATE TABLE orders (id int PRIMARY KEY, status text);
	SELECT pg_replication_origin_create('upstream');});

sub relay
{
	my (@more) = @_;
	return start_relay($node, $k, { name => 'relay_reqid' }, '--topic-prefix', $prefix,
		'--topic-partitions', '1', '--heartbeat-interval', '0', '--delivery', $delivery,
		'--txn-interval-ms', '50', @more);
}

sub streaming
{
	my ($r, $what) = @_;
	return ok($r->wait_for_log(qr/streaming from slot "cdc_relay" into Kafka/), $what);
}

# event_id "<commit_lsn>/<seq>" as a sortable [lsn number, seq]
sub evpos
{
	my ($m) = @_;
	my ($lsn, $seq) = ($m->{headers}{event_id} // '') =~ m{^([0-9A-F]+/[0-9A-F]+)/(\d+)} or return;
	return [ lsn_num($lsn), $seq ];
}

my $relay = relay();
streaming($relay, 'relay streams');

# ---- (a) and (b): one connection: T1 with an id, its retry T2 with the same id, T3
# without; then a rollback on another connection
my $out = sql(q{
BEGIN;
SELECT cdc_relay.set_request_id('checkout-7f3a');
SELECT 'xid1=' || pg_current_xact_id();
INSERT INTO orders VALUES (1, 'new');
SELECT cdc_relay.emit(topic => 'app.orders.events', key => '1', payload => '{"type": "created", "order": 1}');
UPDATE orders SET status = 'paid' WHERE id = 1;
DELETE FROM orders WHERE id = 1;
COMMIT;
BEGIN;
SELECT cdc_relay.set_request_id('checkout-7f3a');
SELECT 'xid2=' || pg_current_xact_id();
INSERT INTO orders VALUES (2, 'new');
SELECT cdc_relay.emit('app.orders.events', NULL, '{"type": "created", "order": 2}');
COMMIT;
BEGIN;
SELECT 'xid3=' || pg_current_xact_id();
INSERT INTO orders VALUES (3, 'new');
SELECT cdc_relay.emit('app.orders.events', '3', '[3]');
COMMIT;
});
my %xid = $out =~ /xid(\d)=(\d+)/g;
is(scalar(keys %xid), 3, 'three transaction ids recorded');
sql(q{
BEGIN;
SELECT cdc_relay.set_request_id('rolled-back');
INSERT INTO orders VALUES (99, 'never');
SELECT cdc_relay.emit('app.orders.events', '99', '{"never": true}');
ROLLBACK;
INSERT INTO orders VALUES (4, 'after the rollback');
});

ok(wait_until(sub { grep { ($_->{key} // '') eq '{"id":4}' } consume($k, $otopic) }, 'order 4 in Kafka'),
	'the row after the rollback is delivered');
my @orders = consume($k, $otopic);
my @events = consume($k, $etopic);
my @txns = consume($k, "$prefix.transactions");

my %by_xid;
push @{ $by_xid{ $_->{headers}{xid} // '' } }, $_ for @orders, @events;
my @t1 = @{ $by_xid{ $xid{1} } // [] };
is(join(' ', map { $_->{headers}{op} } sort { evpos($a)->[1] <=> evpos($b)->[1] || (defined $a->{value} ? 0 : 1) <=> (defined $b->{value} ? 0 : 1) } @t1),
	'c e u d tombstone', 'T1: insert, emit, update, delete and tombstone in Kafka');
is(scalar(grep { ($_->{headers}{request_id} // '') eq 'checkout-7f3a' } @t1), scalar(@t1),
	'T1: request_id header on every message (rows, tombstone, domain event)');
is(scalar(grep { ($_->{headers}{request_id} // '') eq 'checkout-7f3a' } @{ $by_xid{ $xid{2} } // [] }), 2,
	'T2 (the retry): request_id header on its row and its domain event');
my @t3 = @{ $by_xid{ $xid{3} } // [] };
is(scalar(@t3), 2, 'T3 delivered');
is(scalar(grep { exists $_->{headers}{request_id} } @t3, grep { ($_->{headers}{xid} // '') ne $xid{1} && ($_->{headers}{xid} // '') ne $xid{2} } @orders), 0,
	'no request_id on the next transaction of the connection, nor on any other');

# the domain events themselves
my @ev = map { [ $_->{key}, $_->{value}, $_->{headers}{op}, $_->{headers}{xid} ] } @events;
is_deeply(\@ev,
	[ [ '1', '{"type": "created", "order": 1}', 'e', $xid{1} ],
	  [ undef, '{"type": "created", "order": 2}', 'e', $xid{2} ],
	  [ '3', '[3]', 'e', $xid{3} ] ],
	"domain events in $etopic: key text (none for NULL), payload JSON, commit order; none of the rollback")
  or diag(explain(\@ev));
ok(!(grep { ($_->{key} // '') =~ /99/ } @orders, @events), 'nothing of the rolled-back transaction');

# commit order across topics: sorted by (commit_lsn, seq), the ops are as written
my @all = grep { defined $_->{value} && evpos($_) } @orders, @events;
@all = sort { evpos($a)->[0] <=> evpos($b)->[0] || evpos($a)->[1] <=> evpos($b)->[1] } @all;
is(join(' ', map { $_->{headers}{op} } @all), 'c e u d c e c e c',
	'rows and domain events in commit order (commit_lsn, seq) across their topics');
my @eoff = map { evpos($_) } @events;
ok(@eoff == 3 && $eoff[0][0] < $eoff[1][0] && $eoff[1][0] < $eoff[2][0],
	'the emit topic\'s offsets follow commit order');

# the transactions topic: begin and end records carry the id; dedup by id
my (%begin_id, %end_id, %emitted);
for my $m (@txns)
{
	my $v = eval { $json->decode($m->{value}) } or next;
	my $x = $m->{headers}{xid} // '';
	if ($m->{headers}{op} eq 'begin')
	{
		$begin_id{$x} = [ $v->{request_id}, $m->{headers}{request_id} ];
	}
	else
	{
		$end_id{$x} = [ $v->{request_id}, $m->{headers}{request_id} ];
		$emitted{$x} = $v->{emitted};
	}
}
is_deeply([ @{ $begin_id{ $xid{1} } // [] }, @{ $end_id{ $xid{1} } // [] } ], [ ('checkout-7f3a') x 4 ],
	'T1 begin and end records: request_id in value and header');
is_deeply([ @{ $begin_id{ $xid{2} } // [] }, @{ $end_id{ $xid{2} } // [] } ], [ ('checkout-7f3a') x 4 ],
	'T2 begin and end records: request_id in value and header');
is_deeply([ @{ $begin_id{ $xid{3} } // [] }, @{ $end_id{ $xid{3} } // [] } ], [ (undef) x 4 ],
	'T3 begin and end records: no request_id');
is($emitted{ $xid{1} }, 1, 'T1 end record counts its domain event');
my %xids_of_id;
for my $x (keys %end_id)
{
	my $id = $end_id{$x}[0] // next;
	$xids_of_id{$id}{$x} = 1;
}
my @dups = grep { keys %{ $xids_of_id{$_} } > 1 } sort keys %xids_of_id;
is_deeply(\@dups, ['checkout-7f3a'], 'a consumer deduplicating by request id finds the retried request (two xids)');

# ---- (c) exactly once under a kill -9, with a load of transactions that emit
my $n = 400;
my $script = join('', map {
	"BEGIN; SELECT cdc_relay.set_request_id('load-$_'); INSERT INTO orders VALUES (" . (1000 + $_)
	  . ", 'load'); SELECT cdc_relay.emit('$ltopic', 'k$_', '{\"i\": $_}'); COMMIT; SELECT pg_sleep(0.01);\n"
} 1 .. $n);
my $sfile = "$PostgreSQL::Test::Utils::tmp_check/load.sql";
open(my $fh, '>', $sfile) or die;
print $fh $script;
close $fh;
my $load = start_process([ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-f', $sfile ], name => 'load');
ok(wait_until(sub { my @m = consume($k, $ltopic, isolation => 'read_uncommitted'); @m >= 40 }, 'load events in Kafka'),
	'some load events reached Kafka');
$relay->kill('KILL');
$relay->finish;
$relay = relay();
streaming($relay, 'relay restarted after kill -9');
is($load->finish, 0, 'load finished');
ok(wait_until(sub { my @m = consume($k, $ltopic); @m >= $n }, "$n load events", 120), "$n load events visible");
sleep(1);
my @load = consume($k, $ltopic);
my %count;
my $bad_id = 0;
for my $m (@load)
{
	$count{ $m->{key} // '' }++;
	my ($i) = ($m->{key} // '') =~ /^k(\d+)$/;
	$bad_id++ unless defined $i && ($m->{headers}{request_id} // '') eq "load-$i" && $m->{value} eq "{\"i\": $i}";
}
is(scalar(keys %count), $n, "all $n keys in $ltopic");
is(scalar(grep { $count{$_} != 1 } keys %count), 0, 'each exactly once (read_committed) after the kill -9');
is($bad_id, 0, 'each with its transaction\'s request id and its payload');
my $kill_log = $relay->log_content;

# ---- (d) topic names: refused in SQL; a relay-owned topic refused by the relay
my ($rc, $stdout, $stderr) = $node->psql('postgres', q{SELECT cdc_relay.emit('bad topic', '1', '{}')});
ok($rc != 0 && $stderr =~ /invalid topic name "bad topic"/ && $stderr =~ /a-z, A-Z, 0-9/,
	'an invalid topic name is refused in SQL, with the rule') or diag($stderr);
$out = sql(q{
BEGIN;
SELECT 'xid=' || pg_current_xact_id();
INSERT INTO orders VALUES (5, 'before the refused event');
SELECT cdc_relay.emit('rq.public.orders', '5', '{"sneaky": true}');
COMMIT;
SELECT 'lsn=' || pg_current_wal_insert_lsn();
});
my ($rxid) = $out =~ /xid=(\d+)/;
my ($rlsn) = $out =~ /lsn=(\S+)/;
is($relay->finish(60), 1, 'the relay exits 1 on a domain event to its own topic');
my $log = $relay->log_content;
like($log, qr/transaction $rxid \(commit LSN [0-9A-F\/]+\): a domain event to topic "rq\.public\.orders", which is the topic of public\.orders/,
	'the error names the transaction, its commit LSN, the topic and why');
like($log, qr/--emit-refused=skip/, 'the error says how to go past it');
ok(lsn_cmp(confirmed_flush($node, 'cdc_relay'), $rlsn) < 0, 'the refused transaction is not confirmed');
ok(!(grep { ($_->{key} // '') eq '{"id":5}' } consume($k, $otopic)), 'and its row is not committed in Kafka');

# ---- (e) origin, with the relay restarted past the refused event
$relay = relay('--emit-refused', 'skip', '--origin', 'none');
streaming($relay, 'relay restarted with --emit-refused=skip --origin none');
sql(q{
SELECT pg_replication_origin_session_setup('upstream');
INSERT INTO orders VALUES (6, 'replayed');
SELECT cdc_relay.emit('app.orders.events', '6', '{"replayed": true}');
SELECT pg_replication_origin_session_reset();
INSERT INTO orders VALUES (7, 'local');
});
ok(wait_until(sub { grep { ($_->{key} // '') eq '{"id":7}' } consume($k, $otopic) }, 'order 7'),
	'the local transaction after the replayed one is delivered');
@orders = consume($k, $otopic);
ok((grep { ($_->{key} // '') eq '{"id":5}' } @orders), 'the refused transaction\'s row is delivered after the restart');
ok(!(grep { ($_->{key} // '') eq '"5"' || ($_->{key} // '') eq '5' } @orders), 'its domain event is not');
like($relay->log_content, qr/domain event to topic "rq\.public\.orders" \(seq 2\) dropped \(--emit-refused=skip\)/,
	'the dropped event is logged');
ok(!(grep { ($_->{key} // '') eq '{"id":6}' } @orders), '--origin none: the replayed transaction is left out');
ok(!(grep { ($_->{key} // '') eq '6' } consume($k, $etopic)), '--origin none: its domain event too');
is($relay->stop, 0, 'relay stops');

# with the default (any), a replayed transaction is delivered
$relay = relay();
streaming($relay, 'relay restarted with the default origin');
sql(q{
SELECT pg_replication_origin_session_setup('upstream');
INSERT INTO orders VALUES (8, 'replayed');
SELECT pg_replication_origin_session_reset();
});
ok(wait_until(sub { grep { ($_->{key} // '') eq '{"id":8}' } consume($k, $otopic) }, 'order 8'),
	'default origin (any): the replayed transaction is delivered');
is($relay->stop, 0, 'relay stops');

note(sprintf('done in %.1f s', time() - $t_start));
done_testing();
