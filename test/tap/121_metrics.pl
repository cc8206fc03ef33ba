# test/tap/121_metrics.pl: `cdc-relay run --metrics ADDR`, scraped with HTTP::Tiny during
# real runs.  Every scrape is validated by `promtool check metrics` (Debian's prometheus
# package): any complaint fails the test.  The numbers are checked against what the test
# wrote and what Kafka holds (read back with kcat).
#
#  (a) At-least-once, the test broker: a snapshot of two tables (one whose name needs
#      escaping in a label value: public."qu""o\te"), then inserts, updates, deletes and a
#      truncate in known transactions: cdc_relay_snapshot_rows_total, _snapshot_tables(_done),
#      cdc_relay_events_total{table,op}, cdc_relay_transactions_total equal what was
#      written; cdc_relay_bytes_total per table equals the key and value bytes in its
#      topic; cdc_relay_confirmed_lsn equals the slot's confirmed_flush_lsn when idle;
#      cdc_relay_info; 404 for other paths.
#  (b) Kafka unreachable (the test broker's "down"): messages in flight, lag in bytes and
#      seconds rise; back up: all three return to 0; no delivery errors.
#  (c) pg_terminate_backend of the walsender: cdc_relay_reconnects_total counts it, and
#      what is written afterwards is counted once.
#  (d) Exactly-once on the test broker with injected errors: an abortable EndTxn error
#      counts one abort, an abortable Produce error a delivery error (and an abort).
#  (e) Exactly-once against a real Kafka (1 node), the address from a config file
#      ("metrics = ..."): cdc_relay_kafka_transactions_total{result="commit"} equals the
#      committed checkpoint records in the state topic (one per Kafka transaction).
#  (f) Bad usage: a malformed --metrics exits 2; an address in use exits 1 with the fix.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(time sleep);
use RelayTest;
use KafkaCluster;

my $t_start = time();
my $promtool = $ENV{PROMTOOL} // '/usr/bin/promtool';
plan skip_all => "no promtool at $promtool (Debian package prometheus)" unless -x $promtool;

my $node = logical_node('metrics');
my $http = HTTP::Tiny->new(timeout => 10);
my $scrapes = 0;
my $promtool_failed = 0;

sub sql { my ($q, $db) = @_; return $node->safe_psql($db // 'm', $q); }

# The port the relay's log names.
sub metrics_port
{
	my ($relay) = @_;
	$relay->wait_for_log(qr/metrics: listening on 127\.0\.0\.1:(\d+)/) or return undef;
	my ($port) = $relay->log_content =~ /metrics: listening on 127\.0\.0\.1:(\d+)/;
	return $port;
}

# GET /metrics; promtool must accept the text.  Returns {"name{label=value,...}" => value}
# with the labels in the order written, label values unescaped; undef when the scrape
# failed (reported as a failed check).
sub scrape
{
	my ($port, $what) = @_;
	my $res = $http->get("http://127.0.0.1:$port/metrics");
	$scrapes++;
	if (!$res->{success})
	{
		fail("scrape $scrapes ($what): HTTP $res->{status} $res->{reason}");
		return undef;
	}
	my ($out, $err) = ('', '');
	my $text = $res->{content};
	IPC::Run::run([ $promtool, 'check', 'metrics' ], '<', \$text, '>', \$out, '2>', \$err);
	my $rc = $?;
	if ($rc != 0 || $out ne '' || $err ne '')
	{
		fail("scrape $scrapes ($what): promtool check metrics accepts it");
		diag("promtool exit $rc: $out$err" . ($promtool_failed++ ? '' : "\n$text"));
		return undef;
	}
	if (($res->{headers}{'content-type'} // '') !~ m{^text/plain; version=0\.0\.4})
	{
		fail("scrape $scrapes ($what): content type text/plain; version=0.0.4");
		return undef;
	}
	my %m;
	for my $line (split /\n/, $text)
	{
		next if $line =~ /^#/;
		my ($name, $labels, $value) = $line =~ /^([a-z_]+)(?:\{(.*)\})? (\S+)$/
		  or do { fail("scrape $scrapes: unparsed line $line"); return undef; };
		my @l;
		while (defined $labels && $labels =~ /\G(\w+)="((?:[^"\\]|\\.)*)",?/gc)
		{
			my ($k, $v) = ($1, $2);
			$v =~ s/\\(.)/$1 eq 'n' ? "\n" : $1/ge;
			push @l, "$k=$v";
		}
		$m{ @l ? "$name\{" . join(',', @l) . '}' : $name } = $value;
	}
	return \%m;
}

# Scrape until $cond->($metrics) holds (each scrape validated); the last scrape.
sub scrape_until
{
	my ($port, $what, $cond, $timeout) = @_;
	my $m;
	wait_until(sub { $m = scrape($port, $what); return $m && $cond->($m); }, $what, $timeout // 60)
	  or diag("last scrape for $what: " . join(', ', map { "$_=$m->{$_}" } sort keys %{ $m // {} }));
	return $m;
}

# key + value bytes of every message in a topic (kcat, read_committed)
sub topic_bytes
{
	my ($bootstrap, $topic) = @_;
	my $n = 0;
	$n += length($_->{key} // '') + length($_->{value} // '') for consume($bootstrap, $topic);
	return $n;
}

my ($version) = `@{[relay_bin()]} --version` =~ /^cdc-relay (\S+)/;

# ---- (a) at-least-once: snapshot and stream counts -----------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE m');
sql(q{
CREATE EXTENSION cdc_relay;
CREATE TABLE a (id int PRIMARY KEY, v text NOT NULL);
CREATE TABLE "qu""o\te" (id int PRIMARY KEY);
INSERT INTO a SELECT g, 'seed ' || g FROM generate_series(1, 300) g;
INSERT INTO "qu""o\te" SELECT generate_series(1, 7);
});
my $broker = start_broker();
my @args = ({ dbname => 'm', name => 'relay_a' }, '-S', 'm1', '--topic-prefix', 'ma', '--metrics', '127.0.0.1:0',
	'--heartbeat-interval', '0');
my $relay = start_relay($node, $broker, @args);
my $port = metrics_port($relay);
ok($port, "(a) the relay logs the metrics address (port $port)") or BAIL_OUT('no metrics address');
# a scrape while the relay starts is valid too
scrape($port, 'at start');
ok($relay->wait_for_log(qr/streaming from slot "m1" into Kafka/), '(a) snapshot taken, streaming')
  or BAIL_OUT('the relay did not start');
my $qt = 'public."qu""o\te"';
my $m = scrape_until($port, 'snapshot counted', sub { ($_[0]{cdc_relay_snapshot_tables_done} // -1) == 2 });
is($m->{'cdc_relay_snapshot_rows_total{table=public.a}'}, 300, '(a) snapshot rows of public.a');
is($m->{"cdc_relay_snapshot_rows_total{table=$qt}"}, 7, '(a) snapshot rows of the table whose name needs escaping');
is($m->{cdc_relay_snapshot_tables}, 2, "(a) snapshot tables");
is($m->{cdc_relay_up}, 1, '(a) up');
is($m->{"cdc_relay_info{version=$version,slot=m1,delivery=at-least-once}"}, 1, '(a) info names version, slot, delivery');
my $res = $http->get("http://127.0.0.1:$port/other");
is($res->{status}, 404, '(a) other paths: 404');

# known transactions: 10 of 20 inserts, 5 of 10 updates, 1 deleting 30 rows, 1 truncate
sql(join(';', map { my $b = 1000 + $_ * 20; "INSERT INTO a SELECT g, 'n' FROM generate_series($b, $b + 19) g" } 0 .. 9));
sql("UPDATE a SET v = v || '+' WHERE id BETWEEN 1 AND 10") for 1 .. 5;
sql('DELETE FROM a WHERE id BETWEEN 101 AND 130');
sql('TRUNCATE "qu""o\te"');
my $end = sql('SELECT pg_current_wal_insert_lsn()');
ok(wait_for_confirmed($node, 'm1', $end), '(a) the relay confirms the changes');
$m = scrape_until($port, 'the stream counted', sub { ($_[0]{cdc_relay_transactions_total} // 0) >= 17 });
is($m->{'cdc_relay_events_total{table=public.a,op=c}'}, 200, '(a) events c = rows inserted');
is($m->{'cdc_relay_events_total{table=public.a,op=u}'}, 50, '(a) events u = rows updated');
is($m->{'cdc_relay_events_total{table=public.a,op=d}'}, 30, '(a) events d = rows deleted');
is($m->{'cdc_relay_events_total{table=public.a,op=t}'}, 0, '(a) events t of public.a: none');
is($m->{"cdc_relay_events_total{table=$qt,op=t}"}, 1, '(a) the truncate, under the escaped table name');
is($m->{cdc_relay_transactions_total}, 17, '(a) transactions = the 17 written');
is($m->{cdc_relay_delivery_errors_total}, 0, '(a) no delivery errors');
is($m->{'cdc_relay_kafka_transactions_total{result=commit}'}, 0, '(a) at-least-once: no Kafka transactions');
is($m->{'cdc_relay_bytes_total{table=public.a}'}, topic_bytes($broker, 'ma.public.a'),
	'(a) bytes of public.a = key and value bytes in its topic (snapshot, stream, tombstones)');
my ($qtopic) = grep { /^ma\.public\.qu/ } topics($broker->{bootstrap});
is($m->{"cdc_relay_bytes_total{table=$qt}"}, topic_bytes($broker, $qtopic),
	"(a) bytes of the other table = those in its topic ($qtopic)");
$m = scrape_until($port, 'idle: lag 0, nothing in flight, confirmed = the slot',
	sub {
		my $x = shift;
		my $slot = lsn_num(confirmed_flush($node, 'm1', 'm'));
		return $x->{cdc_relay_lag_bytes} == 0 && $x->{cdc_relay_lag_seconds} == 0
		  && $x->{cdc_relay_messages_in_flight} == 0 && $x->{cdc_relay_confirmed_lsn} == $slot;
	});
ok($m && $m->{cdc_relay_lag_bytes} == 0 && $m->{cdc_relay_lag_seconds} == 0,
	'(a) idle: lag bytes and seconds are 0, confirmed_lsn equals the slot\'s confirmed_flush_lsn');

# ---- (b) Kafka unreachable: in flight and lag rise, then fall back to 0 -----------------------
like($broker->command('down 1'), qr/^ok/, '(b) the test broker is down');
sql("INSERT INTO a SELECT g, 'while down' FROM generate_series(5000, 5099) g");
my $t_write = time();
$m = scrape_until($port, 'Kafka down: in flight, lag',
	sub {
		my $x = shift;
		return $x->{cdc_relay_messages_in_flight} > 0 && $x->{cdc_relay_lag_bytes} > 0
		  && $x->{cdc_relay_lag_seconds} >= 1.5;
	});
ok($m && $m->{cdc_relay_messages_in_flight} > 0 && $m->{cdc_relay_lag_seconds} >= 1.5,
	"(b) Kafka down: $m->{cdc_relay_messages_in_flight} messages in flight, lag $m->{cdc_relay_lag_bytes} bytes, "
	  . "$m->{cdc_relay_lag_seconds} s");
ok($m->{cdc_relay_lag_seconds} <= time() - $t_write + 5, '(b) lag seconds no more than the time since the commit (+5 s of clock leeway)');
like($broker->command('up 1'), qr/^ok/, '(b) the test broker is up again');
$m = scrape_until($port, 'Kafka back: nothing in flight, lag 0',
	sub { my $x = shift; $x->{cdc_relay_messages_in_flight} == 0 && $x->{cdc_relay_lag_bytes} == 0 && $x->{cdc_relay_lag_seconds} == 0 });
ok($m && $m->{cdc_relay_lag_bytes} == 0, '(b) Kafka back: in flight, lag bytes and lag seconds return to 0');
is($m->{'cdc_relay_events_total{table=public.a,op=c}'}, 300, '(b) the 100 rows written while down are counted once');
is($m->{cdc_relay_delivery_errors_total}, 0, '(b) no delivery errors (the relay waits for Kafka)');

# ---- (c) reconnects -------------------------------------------------------------------------------
is($m->{cdc_relay_reconnects_total}, 0, '(c) no reconnects so far');
my $mark = length($relay->log_content);
sql(q{SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'm1'});
ok(wait_until(sub { substr($relay->log_content, $mark) =~ /reconnected; streaming from slot "m1" again/ },
	'the relay to reconnect', 60), '(c) the relay reconnects after pg_terminate_backend of its walsender');
sql("INSERT INTO a SELECT g, 'after' FROM generate_series(6000, 6009) g");
$end = sql('SELECT pg_current_wal_insert_lsn()');
ok(wait_for_confirmed($node, 'm1', $end), '(c) the rows written after the reconnect are confirmed');
$m = scrape_until($port, 'reconnect counted', sub { ($_[0]{'cdc_relay_events_total{table=public.a,op=c}'} // 0) >= 310 });
is($m->{cdc_relay_reconnects_total}, 1, '(c) reconnects_total counts the reconnect');
is($m->{'cdc_relay_events_total{table=public.a,op=c}'}, 310, '(c) events after the reconnect counted once');
is($m->{cdc_relay_transactions_total}, 19, '(c) transactions: 17 + 1 + 1');
is($relay->stop, 0, '(a-c) the relay exits 0 on SIGTERM');

# ---- (d) exactly-once on the test broker: injected abortable errors ------------------------------
sql('CREATE TABLE e (id int PRIMARY KEY)');
$relay = start_relay($node, $broker, { dbname => 'm', name => 'relay_d' }, '-S', 'm2', '--topic-prefix', 'md',
	'--tables', 'public.e', '--snapshot', 'never', '--heartbeat-interval', '0', '--delivery', 'exactly-once',
	'--metrics', '127.0.0.1:0');
$port = metrics_port($relay);
ok($relay->wait_for_log(qr/streaming from slot "m2" into Kafka/), '(d) exactly-once relay streams')
  or BAIL_OUT('the relay did not start');
my $id = 0;
my $write = sub { sql('BEGIN;' . join(';', map { $id++; "INSERT INTO e VALUES ($id)" } 1 .. 20) . ';COMMIT') for 1 .. 3; };
$write->();
$end = sql('SELECT pg_current_wal_insert_lsn()');
ok(wait_for_confirmed($node, 'm2', $end), '(d) confirmed');
$m = scrape($port, '(d) before the errors');
ok($m && $m->{'cdc_relay_kafka_transactions_total{result=commit}'} >= 1, "(d) Kafka commits counted ("
	  . ($m->{'cdc_relay_kafka_transactions_total{result=commit}'} // 'none') . ')');
is($m->{'cdc_relay_kafka_transactions_total{result=abort}'}, 0, '(d) no aborts yet');
ok(exists $m->{"cdc_relay_info{version=$version,slot=m2,delivery=exactly-once}"}, '(d) info says exactly-once');
like($broker->command('error EndTxn UNKNOWN_PRODUCER_ID 1'), qr/^ok/, '(d) an abortable EndTxn error injected');
$mark = length($relay->log_content);
$write->();
$end = sql('SELECT pg_current_wal_insert_lsn()');
ok(wait_for_confirmed($node, 'm2', $end), '(d) confirmed after the abort');
like(substr($relay->log_content, $mark), qr/Kafka transaction aborted/, '(d) the relay logged the abort');
$m = scrape($port, '(d) after the EndTxn error');
is($m->{'cdc_relay_kafka_transactions_total{result=abort}'}, 1, '(d) one abort counted');
is($m->{cdc_relay_delivery_errors_total}, 0, '(d) an EndTxn error is no delivery error');
like($broker->command('error Produce UNKNOWN_PRODUCER_ID 1'), qr/^ok/, '(d) an abortable Produce error injected');
$write->();
$end = sql('SELECT pg_current_wal_insert_lsn()');
ok(wait_for_confirmed($node, 'm2', $end), '(d) confirmed after the failed delivery');
$m = scrape($port, '(d) after the Produce error');
ok($m->{cdc_relay_delivery_errors_total} >= 1, "(d) the failed delivery counted ($m->{cdc_relay_delivery_errors_total})");
is($m->{'cdc_relay_kafka_transactions_total{result=abort}'}, 2, '(d) ... and its abort');
is($relay->stop, 0, '(d) the relay exits 0 on SIGTERM');
$broker->stop;

# ---- (f) bad usage ------------------------------------------------------------------------------------
my ($st, $out, $errout) = run_relay($node, 'localhost:1', '--metrics', '127.0.0.1:99999');
is($st, 2, '(f) --metrics with a bad port: exit 2');
like($errout, qr/--metrics: bad port/, '(f) ... saying why');
{
	# a port in use: listen on one, then start a relay on it
	my $sock = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp');
	my $busy = $sock->sockport;
	($st, $out, $errout) = run_relay($node, 'localhost:1', '--metrics', "127.0.0.1:$busy");
	is($st, 1, '(f) --metrics on a port in use: exit 1');
	like($errout, qr/metrics: cannot listen on 127\.0\.0\.1:$busy: .*fix: choose another --metrics address/,
		'(f) ... with the fix');
	close $sock;
}

# ---- (e) exactly-once, real Kafka, address from the config file ----------------------------------------
my $k = KafkaCluster->start(nodes => 1);
note("Kafka at $k->{bootstrap} (started in " . sprintf('%.1f', $k->{seconds} // 0) . ' s)');
my $conf = PostgreSQL::Test::Utils::tempdir() . '/relay.conf';
PostgreSQL::Test::Utils::append_to_file($conf, "metrics = 127.0.0.1:0\ndelivery = exactly-once\n");
sql('CREATE TABLE k (id int PRIMARY KEY, v text)');
$relay = start_relay($node, $k, { dbname => 'm', name => 'relay_e' }, '-c', $conf, '-S', 'm3', '--topic-prefix', 'mk',
	'--tables', 'public.k', '--snapshot', 'never', '--heartbeat-interval', '0');
$port = metrics_port($relay);
ok($port, '(e) metrics address from the config file');
ok($relay->wait_for_log(qr/streaming from slot "m3" into Kafka/, 120), '(e) streaming into real Kafka')
  or BAIL_OUT('the relay did not start');
for my $i (1 .. 20)
{
	sql("INSERT INTO k SELECT g, 'x' FROM generate_series($i * 100, $i * 100 + 9) g");
	sleep(0.05);
}
$end = sql('SELECT pg_current_wal_insert_lsn()');
ok(wait_for_confirmed($node, 'm3', $end, 120), '(e) confirmed');
my ($commits, $records);
ok(wait_until(sub {
			my $before = scrape($port, '(e) commits') or return 0;
			my @st = consume($k, 'mk.__state');
			$records = scalar(@st);
			my $after = scrape($port, '(e) commits') or return 0;
			$commits = $after->{'cdc_relay_kafka_transactions_total{result=commit}'};
			return $before->{'cdc_relay_kafka_transactions_total{result=commit}'} == $commits && $commits == $records;
		}, 'commits = state records', 60),
	"(e) Kafka commits counted ($commits) = committed checkpoint records in the state topic ($records)");
ok($commits >= 2, '(e) more than the first checkpoint was committed');
$m = scrape($port, '(e) final');
is($m->{'cdc_relay_events_total{table=public.k,op=c}'}, 200, '(e) events = rows inserted');
is($m->{'cdc_relay_kafka_transactions_total{result=abort}'}, 0, '(e) no aborts');
is($m->{'cdc_relay_bytes_total{table=public.k}'}, topic_bytes($k, 'mk.public.k'),
	'(e) bytes = key and value bytes in the topic (read_committed)');
is($relay->stop, 0, '(e) the relay exits 0 on SIGTERM');
$k->stop;

note("$scrapes scrapes, each checked by promtool");
note(sprintf('done in %.0f s', time() - $t_start));
done_testing();
