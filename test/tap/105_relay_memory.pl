# test/tap/105_relay_memory.pl — the relay's memory: bounded while it relays a
# huge transaction, no memory errors or leaks under AddressSanitizer and
# LeakSanitizer, and no definite leaks under valgrind.
#
#  (a) Bounded memory.  The relay streams slot "mem" (--snapshot never) while
#      one transaction inserts 1,000,000 rows of ~100 bytes of text.  While it
#      relays them, /proc/<pid>/status is read every 0.1 s (VmRSS) until the
#      slot's confirmed_flush_lsn passes the end of the transaction; the peak
#      is the kernel's VmHWM (the high-water mark of the resident set, so
#      nothing between two samples is missed); it must stay under 100 MB and
#      is printed.  The relay has to wait for Kafka (librdkafka's queue is
#      bounded, the server keeps the WAL) instead of buffering the transaction.
#      Counting: the test broker keeps only the newest ~5 MiB of each
#      partition, so the topic cannot be read back whole.
#      What is counted instead is the end offset (high watermark) of each
#      partition, `kcat -Q -t topic:partition:-1`: Kafka's own count of the
#      messages appended, kept when old ones are dropped.  The idempotent
#      producer never appends a retried batch twice and this relay never
#      re-reads (its log is checked for "reconnecting"), so the sum must be
#      exactly 1,000,000; the relay's closing line "... N events" after
#      SIGTERM must say 1000000 too, and the last message of each partition
#      is read back and must be an insert event of that table.
#  (b) AddressSanitizer + LeakSanitizer + UBSan: $CDC_RELAY_ASAN (skipped, with
#      the reason, only when that file does not exist) takes an initial
#      snapshot of four tables (primary key, composite key, no key, and one
#      whose keys are changed later; 950 rows, the count the relay logs is
#      checked), streams inserts, updates (some changing primary keys),
#      deletes, a truncate,
#      transactional and non-transactional logical messages, lives
#      through a broker down/up cycle, and stops on SIGTERM.  With
#      ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=99 it must exit
#      0 and its stderr must hold no "ERROR: AddressSanitizer",
#      "ERROR: LeakSanitizer" or "runtime error:" line.  No LSan suppressions
#      are used: none is needed (checked: librdkafka, libpq and jansson leave
#      no leak at exit in this run), so any report is the relay's.
#      Kafka is then checked (both logical messages, the truncate event, and
#      the last message per key of the two keyed tables whose keys never
#      changed equals the table), so the run did what it was meant to.
#  (c) valgrind --leak-check=full --errors-for-leak-kinds=definite
#      --error-exitcode=99 on the plain relay: a snapshot of a small table, a
#      few changes, SIGTERM: exit 0, no "definitely lost" bytes and
#      "ERROR SUMMARY: 0 errors" in its report (it takes a few seconds here).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use IPC::Run;
use JSON::PP;
use RelayTest;

my $rows = 1_000_000;
my $rss_limit_kb = 100 * 1024;

my $node = logical_node('memory');
$node->safe_psql('postgres', q{
CREATE EXTENSION cdc_relay;
CREATE TABLE big (id int PRIMARY KEY, pad text NOT NULL);
});

my $broker = start_broker();

sub sql { return $node->safe_psql('postgres', $_[0]); }

# VmRSS / VmHWM of a process, in kB (undef once it is gone).
sub proc_mem
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/status") or return;
	my %m;
	while (<$fh>)
	{
		$m{$1} = $2 if /^(VmRSS|VmHWM):\s+(\d+) kB/;
	}
	close $fh;
	return ($m{VmRSS}, $m{VmHWM});
}

# Partition count and end offsets of a topic (kcat -L, kcat -Q).
sub end_offsets
{
	my ($topic) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'kcat', '-b', $broker->{bootstrap}, '-L', '-t', $topic ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60))
	  or die "kcat -L: $err";
	my ($n) = $out =~ /topic "\Q$topic\E" with (\d+) partitions/ or die "no topic $topic: $out";
	($out, $err) = ('', '');
	IPC::Run::run([ 'kcat', '-b', $broker->{bootstrap}, '-Q', map { ('-t', "$topic:$_:-1") } 0 .. $n - 1 ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60))
	  or die "kcat -Q: $err";
	my %end = map { /^\Q$topic\E \[(\d+)\] offset (-?\d+)$/ ? ($1 => $2) : () } split /\n/, $out;
	die "kcat -Q gave " . scalar(keys %end) . " of $n partitions: $out" unless keys %end == $n;
	return \%end;
}

# ---- (a) bounded memory -------------------------------------------------------------

{
	my $relay = start_relay($node, $broker, '-S', 'mem', '--snapshot', 'never',
		'--heartbeat-interval', '0');
	$relay->wait_for_log(qr/streaming from slot "mem" into Kafka/)
	  or BAIL_OUT('the relay did not start streaming');
	my $pid = $relay->{pid};
	my ($rss0) = proc_mem($pid);

	# The broker is down while the transaction arrives, so librdkafka's queue
	# fills up to its limit: the relay must then stop reading the slot.
	like($broker->command('down all'), qr/^ok/, '(a) broker down');
	my $t0 = time();
	sql(qq{INSERT INTO big SELECT g, rpad(g::text || ':', 100, md5(g::text)) FROM generate_series(1, $rows) g});
	my $end = sql('SELECT pg_current_wal_insert_lsn()');
	my $t_insert = time() - $t0;
	note sprintf('inserted %d rows in one transaction in %.1f s; WAL insert position %s', $rows, $t_insert, $end);

	# sample for 5 s with the broker down, then until the slot is confirmed
	# past the transaction
	my ($max_rss, $samples, $last_check, $done, $down) = (0, 0, 0, 0, 1);
	my ($rss_down, $up_at);
	my $deadline = time() + 150;
	$t0 = time();
	while (time() < $deadline && $relay->alive)
	{
		my ($rss) = proc_mem($pid);
		last unless defined $rss;
		$samples++;
		$max_rss = $rss if $rss > $max_rss;
		if ($down && time() - $t0 >= 5)
		{
			$rss_down = $max_rss;
			like($broker->command('up all'), qr/^ok/, '(a) broker up after 5 s');
			$down = 0;
			$up_at = time();
		}
		if (!$down && time() - $last_check >= 0.5)
		{
			$last_check = time();
			my $c = confirmed_flush($node, 'mem');
			if ($c ne '' && lsn_cmp($c, $end) >= 0)
			{
				$done = 1;
				last;
			}
		}
		sleep(0.1);
	}
	my $t_relay = time() - $t0;
	my (undef, $hwm) = proc_mem($pid);
	ok($done, "(a) confirmed_flush_lsn passes the end of the $rows-row transaction ($end)");
	note sprintf('relayed in %.1f s (%.1f s after the broker came back); %d samples; RSS at start %.1f MB, '
		  . 'highest sampled while the broker was down %.1f MB, highest sampled %.1f MB, VmHWM %.1f MB',
		$t_relay, time() - ($up_at // time()), $samples, ($rss0 // 0) / 1024, ($rss_down // 0) / 1024,
		$max_rss / 1024, ($hwm // 0) / 1024);
	diag(sprintf('relay peak RSS (VmHWM) while relaying %d rows: %.1f MB', $rows, ($hwm // 0) / 1024));
	ok(defined $hwm && $hwm < $rss_limit_kb,
		sprintf('(a) peak RSS of the relay %.1f MB < %d MB', ($hwm // 0) / 1024, $rss_limit_kb / 1024));

	my $log_from = length($relay->log_content);
	is($relay->stop, 0, '(a) the relay exits 0 on SIGTERM');
	my $log = $relay->log_content;
	unlike($log, qr/reconnecting|delivery failed/, '(a) the relay never re-read from the slot (no duplicates to expect)');
	like(substr($log, $log_from), qr/confirmed up to [0-9A-F]+\/[0-9A-F]+ .*, 1 transactions, $rows events/,
		"(a) the relay's closing line counts 1 transaction and $rows events");

	my $ends = end_offsets('cdc.public.big');
	my $sum = 0;
	$sum += $_ for values %$ends;
	note 'end offsets: ' . join(', ', map { "[$_] $ends->{$_}" } sort keys %$ends);
	is($sum, $rows, "(a) the partitions' end offsets add up to $rows messages");

	# the last message of each partition is an insert event of big
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'kcat', '-b', $broker->{bootstrap}, '-C', '-t', 'cdc.public.big', '-o', '-1', '-e', '-q', '-J' ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	my @last = map { decode_json($_) } grep { /\S/ } split /\n/, $out;
	my @good = grep {
		my $v = eval { decode_json($_->{payload}) };
		$v && $v->{op} eq 'c' && $v->{table} eq 'big' && $_->{key} eq qq({"id":$v->{after}{id}})
		  && $v->{after}{pad} =~ /^$v->{after}{id}:/
	} @last;
	is(scalar(@good), scalar(keys %$ends), '(a) the last message of each partition is an insert event of big');
}

# ---- (b) AddressSanitizer / LeakSanitizer ----------------------------------------------

SKIP:
{
	my $asan = $ENV{CDC_RELAY_ASAN} // '';
	skip("no AddressSanitizer build: CDC_RELAY_ASAN is "
		  . ($asan eq '' ? 'not set' : "$asan, which does not exist")
		  . ' (make -C relay asan builds relay/cdc-relay-asan)', 13)
	  unless $asan ne '' && -x $asan;

	sql(q{
CREATE TABLE a_pk (id int PRIMARY KEY, v text);
CREATE TABLE a_comp (k1 int, k2 text, v int, PRIMARY KEY (k1, k2));
CREATE TABLE a_nokey (v text);
CREATE TABLE a_move (id int PRIMARY KEY, v text);
INSERT INTO a_move SELECT g, 'm' || g FROM generate_series(1, 50) g;
INSERT INTO a_pk SELECT g, 'v' || g FROM generate_series(1, 500) g;
INSERT INTO a_comp SELECT g % 7, 'k' || g, g FROM generate_series(1, 300) g;
INSERT INTO a_nokey SELECT 'n' || g FROM generate_series(1, 100) g;
});
	local $ENV{ASAN_OPTIONS} = 'detect_leaks=1:abort_on_error=0:exitcode=99';
	local $ENV{UBSAN_OPTIONS} = 'print_stacktrace=1';
	my $relay = start_relay($node, $broker, { bin => $asan, name => 'relay_asan' },
		'-S', 'asan', '--topic-prefix', 'asan', '--tables', 'public.a_*', '--heartbeat-interval', '1');
	ok($relay->wait_for_log(qr/streaming from slot "asan" into Kafka/),
		'(b) ASan relay: snapshot taken, streaming');
	like($relay->log_content, qr/snapshot complete: 950 rows from 4 tables/, '(b) the snapshot read 950 rows of 4 tables');

	sql(q{
INSERT INTO a_pk SELECT g, 'new' || g FROM generate_series(501, 600) g;
UPDATE a_pk SET v = v || '-u' WHERE id % 3 = 0;
DELETE FROM a_pk WHERE id % 5 = 0;
UPDATE a_comp SET v = v * 10 WHERE k1 = 3;
DELETE FROM a_comp WHERE k1 = 4;
UPDATE a_move SET id = id + 1000 WHERE id % 2 = 0;
INSERT INTO a_nokey VALUES ('late');
BEGIN;
TRUNCATE a_nokey;
SELECT pg_logical_emit_message(true, 'asan-test', 'transactional');
COMMIT;
SELECT pg_logical_emit_message(false, 'asan-test', 'non-transactional');
});
	ok(wait_for_confirmed($node, 'asan', sql('SELECT pg_current_wal_insert_lsn()')),
		'(b) ASan relay: the changes are confirmed');

	like($broker->command('down all'), qr/^ok/, '(b) broker down');
	sql(q{INSERT INTO a_pk SELECT g, 'down' || g FROM generate_series(601, 700) g;
	      UPDATE a_comp SET v = -v WHERE k1 = 1;});
	my $lsn = sql('SELECT pg_current_wal_insert_lsn()');
	ok($relay->wait_for_log(qr/_ALL_BROKERS_DOWN/), '(b) the relay sees the broker down');
	like($broker->command('up all'), qr/^ok/, '(b) broker up');
	ok(wait_for_confirmed($node, 'asan', $lsn), '(b) ASan relay: the changes made while the broker was down are confirmed');

	my $status = $relay->stop;
	my $log = $relay->log_content;
	is($status, 0, '(b) the ASan relay exits 0 on SIGTERM (exit code 99 would be a sanitizer report)');
	my @reports = grep { /ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:/ } split /\n/, $log;
	is(scalar(@reports), 0, '(b) no AddressSanitizer, LeakSanitizer or UBSan report')
	  or diag(join("\n", @reports) . "\n(full report in $relay->{log})");

	my @m = consume($broker, 'asan.messages');
	is(join(',', map { "$_->{key}:" . decode_json($_->{value})->{transactional} } @m), 'asan-test:1,asan-test:0',
		'(b) both logical messages are in asan.messages') or diag(explain(\@m));
	my @t = grep { ($_->{headers}{op} // '') eq 't' } consume($broker, 'asan.public.a_nokey');
	is(scalar(@t), 1, '(b) the truncate event is in asan.public.a_nokey');

	# Kafka against the tables: canonical key JSON => canonical row JSON
	my $canon = JSON::PP->new->canonical;
	for my $t ([ 'a_pk', 'id' ], [ 'a_comp', 'k1, k2' ])
	{
		my ($table, $keycols) = @$t;
		my $last = last_by_key([ consume($broker, "asan.public.$table") ]);
		my %kafka = map { ($canon->encode(decode_json($_)) => $canon->encode(decode_json($last->{$_})->{after})) }
		  keys %$last;
		my $keyexpr = 'json_build_object(' . join(', ', map { "'$_', $_" } split /, /, $keycols) . ')';
		my %db = map { map { $canon->encode($_) } @{ decode_json($_) } }
		  split /\n/, sql("SELECT json_build_array($keyexpr, row_to_json(t)) FROM $table t");
		is_deeply(\%kafka, \%db, "(b) Kafka (last message per key) equals table $table (" . scalar(keys %db) . ' rows)');
	}
}

# ---- (c) valgrind -------------------------------------------------------------------------

SKIP:
{
	skip('valgrind is not installed', 4) unless system('valgrind --version >/dev/null 2>&1') == 0;
	sql(q{CREATE TABLE vg (id int PRIMARY KEY, v text);
	      INSERT INTO vg SELECT g, 'v' || g FROM generate_series(1, 200) g;});
	my $vglog = "$PostgreSQL::Test::Utils::log_path/valgrind.log";
	my $t0 = time();
	my $relay = start_process(
		[ 'valgrind', '--leak-check=full', '--errors-for-leak-kinds=definite', '--error-exitcode=99',
		  "--log-file=$vglog", relay_bin(), 'run', '-d', $node->connstr('postgres'),
		  '-b', $broker->{bootstrap}, '-S', 'vg', '--topic-prefix', 'vg', '--tables', 'public.vg',
		  '--status-interval', '0.5', '--heartbeat-interval', '0' ],
		name => 'relay_valgrind');
	$relay->wait_for_log(qr/streaming from slot "vg" into Kafka/, 90)
	  or diag('the relay under valgrind did not start streaming');
	sql(q{INSERT INTO vg VALUES (201, 'x'); UPDATE vg SET v = 'u' WHERE id < 10; DELETE FROM vg WHERE id = 20;});
	ok(wait_for_confirmed($node, 'vg', sql('SELECT pg_current_wal_insert_lsn()'), 60),
		'(c) the relay under valgrind streams the changes');
	my $status = $relay->stop(90);
	note sprintf('valgrind run: %.1f s', time() - $t0);
	is($status, 0, '(c) the relay under valgrind exits 0 on SIGTERM (99 = valgrind found errors)');
	my $report = slurp_file($vglog);
	my $clean = 0;
	$clean++ if ok($report !~ /definitely lost: [1-9]/, '(c) valgrind: nothing definitely lost');
	$clean++ if ok($report =~ /ERROR SUMMARY: 0 errors/, '(c) valgrind: no errors');
	diag("valgrind report:\n$report") if $clean < 2;
}

is($broker->stop, 0, 'the broker exits 0 on SIGTERM');
$node->stop;
done_testing();
