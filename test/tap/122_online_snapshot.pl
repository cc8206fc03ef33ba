# test/tap/122_online_snapshot.pl: online snapshots (cdc_relay.request_snapshot(),
# `cdc-relay snapshot`) against a real Kafka (a 1-node KRaft cluster), read back with kcat.
#
# A relay streams a slot created without a snapshot (--snapshot never), so every row of
# the tables reaches Kafka only through an online snapshot or the stream.  Then:
#   (a) a table without a key is refused with the reason and the fix (SQL and CLI);
#   (b) an online snapshot requested in SQL with a "where" emits exactly the rows it
#       selects ("r" records of those keys only), and the job row, status and metrics
#       (validated by promtool) show its progress;
#   (b2) a request message forged with pg_logical_emit_message by another role is refused
#       (its SQL text never runs) and the relay goes on;
#   (c) `cdc-relay snapshot big` on a table of ONLINE_ROWS (default 1,000,000) rows while
#       pgbench updates, deletes and re-inserts keys in its range (and moves keys out of
#       it), with the relay killed (-9) in the middle of the job (held there by a lock on
#       the job row) and started again, then killed again right after a chunk was emitted
#       (chunks in flight) and started again: at the
#       end Kafka's last record per key equals the table for every key (no key lost, no
#       stale row, deleted keys end deleted); the restart resumed after the chunks the
#       state record says were delivered (its log names them, its first chunk is the next
#       one, and no key at or below the delivered key got a second "r" record, no key more
#       than one per kill); the job ends "done" in cdc_relay.snapshot_jobs; `cdc-relay verify` agrees.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use HTTP::Tiny;
use JSON::PP;
use RelayTest;
use KafkaCluster;

my $t_start = time();
my $rows = $ENV{ONLINE_ROWS} // 1_000_000;
my $chunk = $ENV{ONLINE_CHUNK_ROWS} // 20_000;
my $promtool = $ENV{PROMTOOL} // '/usr/bin/promtool';

my $node = logical_node('online', 'max_connections = 40');
sub sql { return $node->safe_psql('postgres', $_[0]); }
sql('CREATE EXTENSION cdc_relay');
sql(qq{CREATE TABLE big (id int PRIMARY KEY, grp int NOT NULL, v text, n int NOT NULL DEFAULT 0);
	INSERT INTO big SELECT g, g % 100, md5(g::text), 0 FROM generate_series(1, $rows) g;
	CREATE TABLE small (id int PRIMARY KEY, v text);
	INSERT INTO small SELECT g, 'small ' || g FROM generate_series(1, 50000) g;
	CREATE TABLE nokey (a int, b text);
	INSERT INTO nokey VALUES (1, 'x');
	ANALYZE big, small});
note(sprintf('tables created in %.1f s', time() - $t_start));

my $prefix = "online$$";
my $k = KafkaCluster->start(nodes => 1);
my $bootstrap = $k->{bootstrap};
note(sprintf('PostgreSQL and Kafka started in %.1f s', time() - $t_start));

my @relay_args = ('-S', 'online', '--topic-prefix', $prefix, '--snapshot', 'never', '--topic-partitions', '3',
	'--snapshot-chunk-rows', $chunk, '--metrics', '127.0.0.1:0', '--heartbeat-interval', '1');
my $relay = start_relay($node, $k, { name => 'relay_online' }, @relay_args);
$relay->wait_for_log(qr/streaming from slot "online"/) or BAIL_OUT('the relay did not start streaming');
my ($port) = $relay->log_content =~ /metrics: listening on 127\.0\.0\.1:(\d+)/;

# GET /metrics, validated by promtool: {"name{labels}" => value}
sub scrape
{
	my ($what) = @_;
	my $res = HTTP::Tiny->new(timeout => 10)->get("http://127.0.0.1:$port/metrics");
	return {} unless $res->{success};
	if (-x $promtool)
	{
		my ($out, $err) = ('', '');
		IPC::Run::run([ $promtool, 'check', 'metrics' ], '<', \$res->{content}, '>', \$out, '2>', \$err);
		ok($? == 0, "$what: promtool check metrics accepts the scrape") or diag("$out$err");
	}
	my %m;
	for (split /\n/, $res->{content})
	{
		$m{$1} = $2 if /^([a-z_]+(?:\{.*\})?) (\S+)$/;
	}
	return \%m;
}

sub snapshot_cmd
{
	return run_relay($node, undef, { exact => 1, name => 'snapshot_cmd' },
		'snapshot', @_, '-d', $node->connstr('postgres'));
}

# ---- (a) a table without a key -------------------------------------------------------------
{
	my ($rc, $out, $err) = snapshot_cmd('nokey');
	is($rc, 3, '(a) cdc-relay snapshot of a table without a key exits 3');
	like($err, qr/cannot take an online snapshot of table "nokey": it has no key.*Add a primary key/s,
		'(a) ... saying why and what to do');
	my ($ret, $o, $e) = $node->psql('postgres', q{SELECT cdc_relay.request_snapshot('nokey')});
	like($e, qr/it has no key/, '(a) request_snapshot() refuses it too');
	($rc, $out, $err) = snapshot_cmd();
	is($rc, 2, '(a) cdc-relay snapshot without a table: bad usage');
}

# ---- (b) a "where" that limits the range ---------------------------------------------------
my $small_job = sql(q{SELECT cdc_relay.request_snapshot('public.small', 'id > 40000')});
ok($small_job > 0, "(b) job $small_job requested in SQL with a where");
$relay->wait_for_log(qr/online snapshot job $small_job of public\.small done: 10000 rows in \d+ chunks/)
  or diag('job not done');
{
	my @msgs = consume($bootstrap, "$prefix.public.small");
	my @r = grep { ($_->{headers}{op} // '') eq 'r' } @msgs;
	my @outside = grep { JSON::PP->new->decode($_->{key})->{id} <= 40000 } @r;
	is(scalar(@r), 10000, '(b) 10000 "r" records, one per selected row');
	is(scalar(@outside), 0, '(b) none of a key the where excludes');
	my $tab = table_rows($node, '(SELECT * FROM small WHERE id > 40000)', ['id']);
	compare_rows('(b) small where id > 40000', kafka_rows(\@msgs), $tab);
	is(sql("SELECT status || ' ' || rows FROM cdc_relay.snapshot_jobs WHERE id = $small_job"), 'done 10000',
		'(b) the job row says done, 10000 rows');
	my $m = scrape('(b)');
	is($m->{'cdc_relay_online_snapshot_rows_total{table="public.small"}'}, 10000,
		'(b) cdc_relay_online_snapshot_rows_total counts them');
	is($m->{'cdc_relay_online_snapshot_active{table="public.small"}'}, 0, '(b) ... and the job is no longer active');
}

# ---- (b2) a forged request ------------------------------------------------------------------
# Anyone may write a logical message with any prefix: the relay acts only on requests that
# cdc_relay.request_snapshot() recorded, so SQL text in a forged message never runs.
{
	sql('CREATE ROLE mallory LOGIN');
	my $relid = sql(q{SELECT 'public.small'::regclass::oid});
	my $forged = JSON::PP->new->canonical->encode({ job => 999999, relid => $relid + 0,
		table => 'public.small', ident => '"schema":"public","table":"small"', key => ['id'],
		partition => JSON::PP::false, where => 'true) OR (pg_catalog.pg_sleep(0) IS NULL' });
	$forged =~ s/'/''/g;
	$node->safe_psql('postgres',
		"SELECT pg_catalog.pg_logical_emit_message(true, 'cdc_relay.snapshot_request', '$forged')",
		extra_params => [ '-U', 'mallory' ]);
	ok($relay->wait_for_log(qr/online snapshot job 999999 of public\.small failed: the request message does not match a job that cdc_relay\.request_snapshot\(\) recorded/),
		'(b2) a request message written by pg_logical_emit_message, not request_snapshot(), is refused');
	ok($relay->alive, '(b2) ... and the relay goes on streaming');
	my @r = grep { ($_->{headers}{op} // '') eq 'r' } consume($bootstrap, "$prefix.public.small");
	is(scalar(@r), 10000, '(b2) ... having read nothing for it (still 10000 "r" records)');
	sql('DROP ROLE mallory');
}

# ---- (c) 1M rows under a writer load, a kill -9 in the middle -------------------------------
my $script = "$PostgreSQL::Test::Utils::tmp_check/online_load.sql";
open(my $fh, '>', $script) or die $!;
print $fh <<"EOF";
\\set a random(1, $rows)
\\set b random(1, $rows)
\\set c random(1, $rows)
\\set d random(1, $rows)
BEGIN;
UPDATE big SET n = n + 1, v = md5(random()::text) WHERE id = :a;
DELETE FROM big WHERE id = :b;
INSERT INTO big VALUES (:c, :c % 100, 're-inserted', 0) ON CONFLICT (id) DO UPDATE SET v = 'upserted', n = big.n + 1;
COMMIT;
UPDATE big SET id = id + 2000000 WHERE id = :d AND NOT EXISTS (SELECT 1 FROM big WHERE id = :d + 2000000);
EOF
close $fh;
my $load = RelayTest::start_process(
	[ 'pgbench', '-n', '-c', '3', '-T', '600', '-R', '300', '-f', $script, $node->connstr('postgres') ],
	name => 'pgbench');
sleep(1);

my ($rc, $out, $err) = snapshot_cmd('public.big');
is($rc, 0, '(c) cdc-relay snapshot public.big exits 0');
my ($big_job) = $out =~ /^(\d+)$/m;
ok($big_job, '(c) ... and prints the job id (' . ($big_job // 'none') . ')') or BAIL_OUT("no job: $err");

my $kill_at = int($rows / $chunk / 2) || 1;
$relay->wait_for_log(qr/online snapshot job $big_job: chunk $kill_at emitted/, 180)
  or BAIL_OUT('the job did not get to its middle');
# Hold the job in its middle: the reader's next watermark (it updates the job row) waits
# for this lock, so the checks below and the kill find the job running.
my $locker = RelayTest::start_process(
	[ 'psql', '-X', '-d', $node->connstr('postgres'), '-c',
		'BEGIN; LOCK TABLE cdc_relay.snapshot_jobs IN EXCLUSIVE MODE; SELECT pg_sleep(3600) /* online lock */' ],
	name => 'locker');
wait_until(sub { sql(q{SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
	WHERE c.relname = 'snapshot_jobs' AND l.mode = 'ExclusiveLock' AND l.granted}) == 1 }, 'the job row locked');
sub unlock
{
	sql(q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%online lock%' AND pid <> pg_backend_pid()});
	$locker->finish;
}
{
	my ($st, $sout) = run_relay($node, undef, { exact => 1, name => 'status' },
		'status', '-d', $node->connstr('postgres'), '-b', $bootstrap, '-S', 'online', '--topic-prefix', $prefix);
	like($sout, qr/online snapshot job $big_job \(public\.big\): running, \d+ chunks, \d+ rows read/,
		'(c) cdc-relay status shows the job from cdc_relay.snapshot_jobs');
	like($sout, qr/online snapshot \(state\): job $big_job of public\.big: \d+ chunks, \d+ rows delivered, last key/,
		'(c) ... and its delivered progress from the state record');
	my $m = scrape('(c) during the job');
	is($m->{'cdc_relay_online_snapshot_active{table="public.big"}'}, 1, '(c) cdc_relay_online_snapshot_active is 1');
	ok(($m->{'cdc_relay_online_snapshot_chunks_total{table="public.big"}'} // 0) >= $kill_at,
		'(c) cdc_relay_online_snapshot_chunks_total counts the chunks');
}
$relay->kill('KILL');
$relay->finish;
note("relay killed (-9) after chunk $kill_at");

$relay = start_relay($node, $k, { name => 'relay_online_restarted' }, @relay_args);
my $resumed = qr/online snapshot job $big_job: (\d+) chunks \(\d+ rows\) delivered; resuming after key (\S+)/;
ok($relay->wait_for_log($resumed), '(c) the restarted relay resumes the job after the chunks delivered');
my ($delivered, $resume_key) = $relay->log_content =~ $resumed;
$delivered //= 0;
$resume_key //= 0;
ok($delivered >= 1 && $delivered <= $kill_at + 1, "(c) ... $delivered chunks were delivered before the kill");
($port) = $relay->log_content =~ /metrics: listening on 127\.0\.0\.1:(\d+)/;
unlock();
ok($relay->wait_for_log(qr/online snapshot job $big_job: chunk (\d+) emitted/, 120), '(c) it emits chunks again');
my ($first_after) = $relay->log_content =~ /online snapshot job $big_job: chunk (\d+) emitted/;
is($first_after, $delivered + 1, "(c) its first chunk is the one after the $delivered delivered (never a finished one)");

# A second kill -9 right after a chunk was emitted, before a checkpoint may say it was
# delivered: the chunks in flight are read again (their keys get a second "r" record),
# never one the state record says was delivered.
my $again = $delivered + 3;
$relay->wait_for_log(qr/online snapshot job $big_job: chunk $again emitted/, 120)
  or BAIL_OUT('the restarted relay did not get on with the job');
$relay->kill('KILL');
$relay->finish;
note("relay killed (-9) again right after chunk $again");
$relay = start_relay($node, $k, { name => 'relay_online_restarted_again' }, @relay_args);
ok($relay->wait_for_log($resumed), '(c) the relay restarted again resumes the job');
my ($delivered2, $resume_key2) = $relay->log_content =~ $resumed;
$delivered2 //= 0;
$resume_key2 //= 0;
ok($delivered2 >= $delivered && $delivered2 <= $again, "(c) ... after $delivered2 chunks delivered (key $resume_key2)");
ok($relay->wait_for_log(qr/online snapshot job $big_job: chunk (\d+) emitted/, 120), '(c) it emits chunks again');
($first_after) = $relay->log_content =~ /online snapshot job $big_job: chunk (\d+) emitted/;
is($first_after, $delivered2 + 1, "(c) its first chunk is the one after the $delivered2 delivered");
($port) = $relay->log_content =~ /metrics: listening on 127\.0\.0\.1:(\d+)/;
ok($relay->wait_for_log(qr/online snapshot job $big_job of public\.big done/, 240), '(c) the job is done');

$load->kill('TERM');
$load->finish;
my $end = RelayTest::insert_lsn($node);
sql(q{SELECT pg_logical_emit_message(true, 'online-test', 'end')});
ok(wait_for_confirmed($node, 'online', $end, 120), '(c) the relay confirmed everything written');
is(sql("SELECT status FROM cdc_relay.snapshot_jobs WHERE id = $big_job"), 'done', '(c) the job row says done');
my $dropped;
{
	my $m = scrape('(c) after the job');
	is($m->{'cdc_relay_online_snapshot_active{table="public.big"}'}, 0, '(c) no longer active');
	$dropped = $m->{'cdc_relay_online_snapshot_dropped_rows_total{table="public.big"}'};
	note("rows dropped by the restarted relay (the stream had a newer version): $dropped");
}

my @msgs = consume($bootstrap, "$prefix.public.big");
note(sprintf('%d messages in %s read at %.1f s', scalar(@msgs), "$prefix.public.big", time() - $t_start));
{
	my %r;
	for my $m (@msgs)
	{
		next unless ($m->{headers}{op} // '') eq 'r';
		$r{$1}++ if $m->{key} =~ /^\{"id":(-?\d+)\}$/;
	}
	my @twice_before = grep { $r{$_} > 1 && $_ <= $resume_key2 } keys %r;
	my @too_many = grep { $r{$_} > 3 } keys %r;
	my $twice = grep { $r{$_} > 1 } keys %r;
	is(scalar(@twice_before), 0, "(c) no key at or below the delivered key $resume_key2 has a second \"r\" record")
	  or diag('e.g. ' . join(' ', (sort { $a <=> $b } @twice_before)[ 0 .. 4 ]));
	is(scalar(@too_many), 0, '(c) no key has more than 3 (once, and once more per kill while its chunk was in flight)');
	note("$twice keys read more than once (chunks in flight at a kill)");
	ok(scalar(keys %r) > $rows / 2, '(c) the "r" records cover the table (' . scalar(keys %r) . ' keys)');
}
{
	# Kafka's last record per key, compared with the table in PostgreSQL (a million rows
	# through JSON::PP would take minutes): the event's "after" against to_jsonb(row)
	my $last = last_by_key(\@msgs);
	my $file = "$PostgreSQL::Test::Utils::tmp_check/online_kafka_last.tsv";
	open(my $out, '>', $file) or die $!;
	my $bad_keys = 0;
	for my $key (keys %$last)
	{
		if ($key !~ /^\{"id":(-?\d+)\}$/)
		{
			$bad_keys++;
			next;
		}
		my $id = $1;
		(my $v = $last->{$key}) =~ s/\\/\\\\/g;
		print $out "$id\t$v\n";
	}
	close $out;
	is($bad_keys, 0, '(c) every Kafka key is {"id":N}');
	sql("CREATE TABLE kafka_last (id int PRIMARY KEY, v jsonb NOT NULL); COPY kafka_last FROM '$file'");
	my $diff = sql(q{SELECT count(*) || ' ' || coalesce(string_agg(d, E'\n') FILTER (WHERE n <= 5), '')
		FROM (SELECT row_number() OVER () AS n,
		             CASE WHEN k.id IS NULL THEN 'missing ' || t.id || ': ' || to_jsonb(t)
		                  WHEN t.id IS NULL THEN 'extra ' || k.id || ': ' || (k.v->'after')
		                  ELSE 'different ' || t.id || ': kafka ' || (k.v->'after') || ' table ' || to_jsonb(t) END AS d
		        FROM big t FULL JOIN kafka_last k ON k.id = t.id
		       WHERE k.id IS NULL OR t.id IS NULL OR k.v->'after' IS DISTINCT FROM to_jsonb(t)) x});
	my ($ndiff, $examples) = split / /, $diff, 2;
	is($ndiff, 0, '(c) big after the online snapshot under load: Kafka\'s last record per key equals the table ('
		  . sql('SELECT count(*) FROM big') . ' rows; no key missing, none extra, none different)')
	  or diag("e.g.\n$examples");
}

{
	# cdc-relay verify folds the online "r" records by their commit_lsn / event_id like the rest
	my $t0 = time();
	my ($vrc, $vout, $verr) = run_relay($node, undef, { exact => 1, name => 'verify', timeout => 240 },
		'verify', '-d', $node->connstr('postgres'), '-b', $bootstrap, '--topic-prefix', $prefix, '-S', 'online',
		'--tables', 'public.big', '--json');
	my $j = eval { JSON::PP->new->decode($vout) };
	my ($t) = grep { $_->{table} eq 'public.big' } @{ $j->{tables} // [] };
	is($vrc, 0, sprintf('(c) cdc-relay verify --tables public.big: exit 0 (%.0f s)', time() - $t0))
	  or diag("stdout: $vout\nstderr: $verr");
	is(join(' ', map { $t->{$_} // 'undef' } qw(missing extra different)), '0 0 0',
		'(c) ... no key missing, extra or different');
}

is($relay->stop, 0, 'the relay exits 0 on SIGTERM');
$k->stop;
note(sprintf('total %.1f s', time() - $t_start));
done_testing();
