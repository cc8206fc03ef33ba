# test/tap/116_exactly_once.pl: `--delivery exactly-once` against a real Apache Kafka 4.4
# broker (1-node KRaft cluster), read back by kcat with isolation.level=read_committed.
# Events are identified by (topic, event_id header); the independent record of what was
# committed is an audit slot of the cdc_relay plugin created before the relay's slot
# (RelayTest::slot_events), or, for the large cases, the rows the test itself wrote.
#
# Cases (a) to (e) run two pgbench clients on the shop tables (RelayTest::shop_writers:
# upserts, deletes, primary-key changes) in a database of their own, and end with the
# same checks (check_case): every event committed after the consistent point is in
# Kafka exactly once, byte for byte, nothing else (snapshot rows and tombstones once
# each too); per key, Kafka order is commit order with no replay; the last record per
# key equals the table; PREFIX.transactions holds exactly one begin and one end record
# per PostgreSQL transaction with a captured event, with its commit_lsn, end_lsn and
# counts (events, tables, messages), and none for any other.
#  (a) Basic: the load, plus transactions with a transactional logical message, one with
#      only a message, one touching only an uncaptured table, a non-transactional
#      message, a rollback and a savepoint rolled back; and, while the writers run, a
#      read_committed view taken in the middle is atomic: every transaction whose end
#      record is visible has all its events visible, and every visible event's
#      transaction has its end record visible (transactions topic read before and after
#      the table topics).
#  (b) kill -9 of the relay twice under load (each time stopped first with a Kafka
#      transaction of its open on the broker), restart each time: no new snapshot.
#  (c) PostgreSQL restarted in immediate mode while the relay streams (the relay is
#      SIGSTOPped across the restart so that the slot's position is read before it
#      reconnects): the slot comes back behind the relay's checkpoint in the state topic,
#      so the relay receives transactions it has delivered already (the skip rule).
#  (d) Fencing: relay A is SIGSTOPped with a Kafka transaction open; its server
#      processes (walsender and guard connection, found by application_name) are
#      terminated; relay B starts on the slot, takes the advisory lock and initialises
#      the same transactional.id, fencing A; after more writes A gets SIGCONT and must
#      exit 1 logging the "fenced" error; B streams and delivers everything.  (A's
#      walsender may outlive its termination until A reads again: blocked on a full
#      socket buffer, PostgreSQL cannot even send it the FATAL message; B retries the
#      slot meanwhile.)
#  (e) Abortable: the relay runs with -X transaction.timeout.ms=5000 and is SIGSTOPped
#      with a Kafka transaction open until the broker has aborted it; after SIGCONT it
#      either logs "Kafka transaction aborted" and re-sends, or exits non-zero (then it is
#      restarted; it must not claim that another cdc-relay fenced it: none was started);
#      either way the result is exactly once (a diag says which happened).
# (h) Injected errors on the test broker (`cdc-relay broker`, which does not hide aborted
#     messages, so only loss is checkable): EndTxn and Produce errors of librdkafka
#     2.0.2's three kinds: retriable (librdkafka retries; the relay goes on), abortable
#     (the relay aborts the Kafka transaction and re-reads from the slot, logging "Kafka
#     transaction aborted: ...; re-sending from" or, for a failed delivery, "a Kafka
#     delivery failed ...; re-reading from the slot's confirmed position") and fatal (exit
#     1 with "fatal Kafka error", or "Kafka rejected a message for good"; restarted).
#     Every committed change is in Kafka; a diag shows what the relay logged for each.
# (f) Large transaction: one INSERT of 1,000,000 narrow rows with the default
#     --txn-max-messages (100000): every event exactly once (the seqs 1..1000000 of its
#     commit LSN, each once), one begin and one end record with events = 1000000, and the
#     relay's peak RSS (VmHWM) at most 100 MB.  Then a second 1,000,000-row transaction,
#     the relay killed with SIGKILL once part of it is visible to read_committed (and its
#     end record is not): the state topic's last committed checkpoint has
#     "partial":{"commit_lsn": its commit LSN, "seq": the number of its events visible};
#     after a restart both transactions are in Kafka exactly once.
# (g) Crash during the snapshot of a large table: the relay is killed with SIGKILL right
#     after it logged a "snapshot batch committed: N" line; a read_committed consumer
#     then sees exactly N snapshot rows (whole batches), each once; a read_uncommitted one
#     at least as many.  The next start takes the snapshot again at a new consistent point
#     and publishes every row once more; after some updates and deletes, the last record
#     per key equals the table.
#
# CDC_RELAY_EOS_CASES=abf (say) runs only those cases; CDC_RELAY_EOS_DELIVERY=at-least-once
# runs the same checks against the other mode (most of them must then fail: that is how
# one sees that they can), "none" passes no --delivery at all.
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
my $delivery = $ENV{CDC_RELAY_EOS_DELIVERY} // 'exactly-once';
my @eos = $delivery eq 'none' ? () : ('--delivery', $delivery);
my %run = map { ($_ => 1) } split //, ($ENV{CDC_RELAY_EOS_CASES} // 'abcdehfg');
my $large_rows = 1_000_000;
my $snap_rows = 1_000_000;
my $rss_limit_kb = 100 * 1024;

my $node = logical_node('eos', 'max_connections = 60', 'max_wal_senders = 20', 'max_replication_slots = 20');
my $k = KafkaCluster->start(nodes => 1);
my $sysid = sql('SELECT system_identifier FROM pg_control_system()');
note(sprintf('PostgreSQL and Kafka started in %.1f s', time() - $t_start));

my @shop = qw(accounts lines moves);
my %keycols = (accounts => ['id'], lines => [ 'order_id', 'line_no' ], moves => ['id']);
my %shop_size = (accounts => 2000, orders => 500, moves => 1000);
my %seed = (accounts => 2000, lines => 2000, moves => 1000);

sub sql { return $node->safe_psql($_[1] // 'postgres', $_[0]); }
sub insert_lsn { return RelayTest::insert_lsn($node); }
sub wal_grew { return RelayTest::wal_grew($node, @_); }

sub first10 { my @e = @_; return join("\n", @e[ 0 .. ($#e < 9 ? $#e : 9) ]); }

# new_case(letter, %opt): a database eos_<letter> with the extension, the shop tables
# (unless shop => 0) and an audit slot; returns the case: {name, db, slot, prefix}
sub new_case
{
	my ($name, %opt) = @_;
	my $c = { name => $name, db => "eos_$name", slot => "eos_$name", prefix => "eos$name", %opt };
	sql("CREATE DATABASE $c->{db}");
	sql('CREATE EXTENSION cdc_relay', $c->{db});
	shop_tables($node, $c->{db}, %shop_size) unless defined $opt{shop} && !$opt{shop};
	sql(q{SELECT pg_create_logical_replication_slot('audit', 'cdc_relay')}, $c->{db})
	  unless defined $opt{audit} && !$opt{audit};
	return $c;
}

# relay($c, @more): a relay on the case's database, slot and prefix (3 partitions, no
# heartbeats unless $c->{hb}); $c->{conn} replaces the connection string
sub relay
{
	my ($c, @more) = @_;
	return start_relay($c->{conn} // $node, $k, { dbname => $c->{db}, name => "relay_$c->{name}" },
		'-S', $c->{slot}, '--topic-prefix', $c->{prefix}, '--topic-partitions', '3',
		'--heartbeat-interval', $c->{hb} // '0', @eos, @more);
}

# streaming($c, $relay, $what): waits for "streaming from slot"; on the first start,
# records the consistent point in $c->{cp}
sub streaming
{
	my ($c, $relay, $what) = @_;
	my $ok = ok($relay->wait_for_log(qr/streaming from slot "$c->{slot}" into Kafka/), "($c->{name}) $what");
	($c->{cp}) = $relay->log_content =~ /created replication slot "$c->{slot}", consistent point (\S+?),/
	  unless $c->{cp};
	return $ok;
}

sub table_topics { my ($c) = @_; return map { "$c->{prefix}.public.$_" } @shop; }

# stop_in_transaction($c, $relay): SIGSTOP the relay at a moment when the broker holds a
# Kafka transaction of it that is still open (messages in a table topic above the last
# stable offset); retried with SIGCONT in between.  Returns 1 when stopped so.
sub stop_in_transaction
{
	my ($c, $relay) = @_;
	for my $try (1 .. 40)
	{
		$relay->kill('STOP');
		return 1 if $k->open_transaction(table_topics($c));
		$relay->kill('CONT');
		sleep(0.2);
	}
	return 0;
}

# the relay's records in the state topic (read_committed), decoded
sub state_records
{
	my ($c) = @_;
	my $key = "$sysid/$c->{db}/$c->{slot}";
	return map { $json->decode($_->{value}) } grep { ($_->{key} // '') eq $key && defined $_->{value} }
	  consume($k, "$c->{prefix}.__state");
}

# wait_progress($c, $relay, $bytes): the writers wrote $bytes of WAL and the relay
# confirmed past where they were when this was called
sub wait_progress
{
	my ($c, $bytes, $what) = @_;
	my $from = insert_lsn();
	return ok(wait_until(sub { my $cf = confirmed_flush($node, $c->{slot}, $c->{db});
				lsn_num($cf) && lsn_cmp($cf, $from) > 0 && wal_grew($from, $bytes) },
			"the relay to confirm the writers' work"), "($c->{name}) $what");
}

# finish_load($c, $relay, $writers): stop the writers, wait until the relay confirmed
# the end, stop the relay (exit 0)
sub finish_load
{
	my ($c, $relay, $writers) = @_;
	ok($writers->alive, "($c->{name}) the writers ran all along");
	$writers->kill('TERM');
	$writers->finish;
	my $end = insert_lsn();
	ok(wait_for_confirmed($node, $c->{slot}, $end), "($c->{name}) confirmed_flush_lsn reaches the end ($end)");
	is($relay->stop, 0, "($c->{name}) the relay exits 0 on SIGTERM");
}

# check_case($c): the checks every load case ends with (see the top of the file)
sub check_case
{
	my ($c, %opt) = @_;
	my $n = $c->{name};
	my ($msgs, $all) = consume_tables($k, $c->{prefix}, @shop);
	my @messages = consume($k, "$c->{prefix}.messages");
	my $audit = slot_events($node, 'audit', from => $c->{cp}, dbname => $c->{db}, exclude => $opt{exclude});
	my ($errors, $st) = check_exactly_once($audit->{events}, [ @$all, @messages ], prefix => $c->{prefix});
	is(scalar(@$errors), 0, "($n) every event committed after the consistent point is in Kafka exactly once, "
		  . 'as the plugin wrote it, and nothing else (read_committed)')
	  or diag(first10(@$errors));
	note("($n) " . join(', ', map { "$_ $st->{$_}" } sort keys %$st));
	cmp_ok($st->{events}, '>', $opt{min_events} // 1000, "($n) the writers committed many events ($st->{events})");
	for my $t (@shop)
	{
		my $r = grep { ($_->{headers}{op} // '') eq 'r' && ($_->{headers}{event_id} // '') =~ m{^\Q$c->{cp}\E/r/} }
		  @{ $msgs->{$t} };
		is($r, $seed{$t}, "($n) $t: one snapshot row per seeded row, at the consistent point");
		my ($kerr, $kst) = check_key_order($msgs->{$t}, cp => $c->{cp});
		is(scalar(@$kerr) . ' errors, ' . $kst->{replays} . ' replays', '0 errors, 0 replays',
			"($n) $t: per key, commit order with no replay; tombstones after deletes")
		  or diag(first10(@$kerr));
		compare_rows("($n) $t", kafka_rows($msgs->{$t}), table_rows($node, $t, $keycols{$t}, dbname => $c->{db}));
	}
	my @records = consume($k, "$c->{prefix}.transactions");
	my ($terr, $tst) = check_transactions($audit->{txns}, \@records);
	is(scalar(@$terr), 0, "($n) $c->{prefix}.transactions: one begin and one end record per transaction, "
		  . 'with its LSNs and counts, and no other')
	  or diag(first10(@$terr));
	note("($n) $tst->{txns} transactions, $tst->{records} transaction records");
	sql("SELECT pg_drop_replication_slot('audit')", $c->{db});
	return ($audit, \@messages);
}

# ---- (a) basic ----------------------------------------------------------------------------
if ($run{a})
{
	my $c = new_case('a', hb => 1);
	sql('CREATE TABLE scratch (id serial PRIMARY KEY, v text)', $c->{db});
	my $relay = relay($c, '--exclude-tables', 'public.scratch');
	streaming($c, $relay, 'snapshot taken, the relay streams') or BAIL_OUT('the relay did not start');
	my $writers = shop_writers($node, $c->{db}, %shop_size, pgbench => [ '-T', '900', '-R', '200' ]);
	sql(q{
BEGIN; INSERT INTO scratch (v) VALUES ('uncaptured only'); COMMIT;
BEGIN; UPDATE accounts SET note = 'with a message' WHERE id = 1;
  SELECT pg_logical_emit_message(true, 'shop', 'message in a transaction');
  INSERT INTO scratch (v) VALUES ('and an uncaptured row'); COMMIT;
SELECT pg_logical_emit_message(true, 'shop', 'a transaction of only a message');
SELECT pg_logical_emit_message(false, 'shop', 'not transactional');
BEGIN; INSERT INTO accounts VALUES (-1, 0, 'rolled back'); ROLLBACK;
BEGIN; INSERT INTO accounts VALUES (-2, 0, 'kept'); SAVEPOINT s;
  INSERT INTO accounts VALUES (-3, 0, 'rolled back to the savepoint'); ROLLBACK TO s; COMMIT;
}, $c->{db});
	wait_progress($c, 200000, 'the relay confirms while the writers run');

	# a read_committed view in the middle of the load: whole transactions only
	{
		my @t1 = consume($k, "$c->{prefix}.transactions");
		my (undef, $all) = consume_tables($k, $c->{prefix}, @shop);
		my @t2 = consume($k, "$c->{prefix}.transactions");
		my (%end1, %begin1, %end2, %visible, @errors);
		for my $m (@t1)
		{
			my $v = $json->decode($m->{value});
			$v->{op} eq 'commit' ? ($end1{ $m->{key} } = $v) : ($begin1{ $m->{key} } = 1);
		}
		$end2{ $_->{key} } = 1 for grep { ($_->{headers}{op} // '') eq 'commit' } @t2;
		for my $m (@$all)
		{
			next if !defined $m->{value} || ($m->{headers}{op} // '') eq 'r';
			my $xid = $m->{headers}{xid} // '';
			$visible{$xid}++;
			push @errors, "$m->{topic} offset $m->{offset}: event $m->{headers}{event_id} of xid $xid is visible, "
			  . 'its end record is not' unless $end2{$xid};
		}
		for my $xid (sort keys %end1)
		{
			my $want = $end1{$xid}{events} - $end1{$xid}{messages};
			push @errors, "xid $xid: end record visible with " . $want . ' table events, '
			  . ($visible{$xid} // 0) . ' visible' if ($visible{$xid} // 0) != $want;
		}
		push @errors, "xid $_: begin record visible without its end record" for grep { !$end1{$_} } sort keys %begin1;
		is(scalar(@errors), 0, '(a) mid-load, a read_committed consumer sees whole transactions only ('
			  . scalar(keys %end1) . ' transactions, ' . scalar(@$all) . ' messages)')
		  or diag(first10(@errors));
		cmp_ok(scalar(keys %end1), '>', 20, '(a) ... and many of them were visible');
	}
	wait_progress($c, 200000, 'the writers go on');
	$writers->kill('TERM');
	$writers->finish;
	unlike($writers->log_content, qr/aborted|ERROR/, '(a) no pgbench client aborted');
	# an idle stream: the relay's heartbeat (a transaction of only that) must get no record
	my $idle = insert_lsn();
	ok(wait_until(sub { sql(qq{SELECT count(*) FROM pg_logical_slot_peek_changes('audit', NULL, NULL)
				WHERE lsn > '$idle' AND data LIKE '%"prefix":"cdc_relay.heartbeat"%'}, $c->{db}) > 0 },
			'a heartbeat'), '(a) idle: the relay sends a heartbeat');
	my $end = insert_lsn();
	ok(wait_for_confirmed($node, $c->{slot}, $end), "(a) confirmed_flush_lsn reaches the end ($end)");
	is($relay->stop, 0, '(a) the relay exits 0 on SIGTERM');
	my ($audit, $messages) = check_case($c, exclude => ['public.scratch']);
	my @m = map { $_->{value} =~ /"content":"([^"]*)"/ ? $1 : '?' } @$messages;
	is(join('|', sort @m), 'a transaction of only a message|message in a transaction|not transactional',
		'(a) the three logical messages are in eosa.messages once each');
	my @only_msg = grep { $_->{events} == 1 && $_->{messages} == 1 } values %{ $audit->{txns} };
	is(scalar(@only_msg), 1, '(a) (the message-only transaction is among those checked)');
	note(sprintf('(a) done at %.0f s', time() - $t_start));
}

# ---- (b) kill -9 under load, twice --------------------------------------------------------
if ($run{b})
{
	my $c = new_case('b');
	my $relay = relay($c);
	streaming($c, $relay, 'snapshot taken, the relay streams') or BAIL_OUT('the relay did not start');
	my $writers = shop_writers($node, $c->{db}, %shop_size, pgbench => [ '-T', '900', '-R', '200' ]);
	for my $round (1, 2)
	{
		wait_progress($c, 200000, "round $round: the relay confirms while the writers run");
		ok(stop_in_transaction($c, $relay), "(b) round $round: the relay stopped with a Kafka transaction open");
		$relay->kill('KILL');
		is($relay->finish, 128 + 9, "(b) round $round: kill -9");
		my $down = insert_lsn();
		ok(wait_until(sub { wal_grew($down, 150000) }, 'the writers to go on'), "(b) round $round: writers commit while it is down");
		$relay = relay($c);
		streaming($c, $relay, "round $round: a new relay streams");
		unlike($relay->log_content, qr/snapshot at|created replication slot|dropping slot/, "(b) round $round: no new snapshot");
	}
	wait_progress($c, 150000, 'the relay confirms after the restarts');
	finish_load($c, $relay, $writers);
	check_case($c);
	note(sprintf('(b) done at %.0f s', time() - $t_start));
}

# ---- (c) PostgreSQL restarted in immediate mode -------------------------------------------
if ($run{c})
{
	my $c = new_case('c');
	my $relay = relay($c);
	streaming($c, $relay, 'snapshot taken, the relay streams') or BAIL_OUT('the relay did not start');
	my $writers = shop_writers($node, $c->{db}, %shop_size, pgbench => [ '-T', '900', '-R', '200' ]);
	wait_progress($c, 300000, 'the relay confirms while the writers run');
	$relay->kill('STOP');
	my @st = state_records($c);
	my $checkpoint = @st ? $st[-1]{confirmed_lsn} : undef;
	ok(lsn_num($checkpoint), "(c) the relay's last committed checkpoint: " . ($checkpoint // 'none'));
	$node->stop('immediate');
	$writers->finish;
	$node->start;
	my $slot_at = confirmed_flush($node, $c->{slot}, $c->{db});
	ok(lsn_num($slot_at) && lsn_num($checkpoint) && lsn_cmp($slot_at, $checkpoint) < 0,
		"(c) after the crash the slot ($slot_at) is behind the relay's checkpoint (" . ($checkpoint // 'none') . ')');
	$relay->kill('CONT');
	ok($relay->wait_for_log(qr/reconnected; streaming from slot "$c->{slot}" again/), '(c) the relay reconnects');
	$writers = shop_writers($node, $c->{db}, %shop_size, pgbench => [ '-T', '900', '-R', '200' ]);
	wait_progress($c, 200000, 'the relay confirms the writers\' work after the restart');
	finish_load($c, $relay, $writers);
	unlike($relay->log_content, qr/snapshot at .*\n(?s:.*)snapshot at /, '(c) no new snapshot');
	check_case($c);
	note(sprintf('(c) done at %.0f s', time() - $t_start));
}

# ---- (d) fencing a zombie -----------------------------------------------------------------
if ($run{d})
{
	my $c = new_case('d');
	my $tid = "cdc-relay.$c->{prefix}.$c->{slot}";
	$c->{conn} = $node->connstr($c->{db}) . ' application_name=eos_relay_a';
	my $ra = relay($c);
	streaming($c, $ra, 'relay A streams') or BAIL_OUT('the relay did not start');
	my $writers = shop_writers($node, $c->{db}, %shop_size, pgbench => [ '-T', '900', '-R', '200' ]);
	wait_progress($c, 200000, 'relay A confirms while the writers run');
	ok(stop_in_transaction($c, $ra), '(d) relay A stopped (SIGSTOP) with a Kafka transaction open');
	my $killed = sql(q{SELECT string_agg(backend_type, ',' ORDER BY backend_type), count(pg_terminate_backend(pid))
		FROM pg_stat_activity WHERE application_name = 'eos_relay_a'}, $c->{db});
	like($killed, qr/^client backend(,client backend)*,walsender\|\d+$/,
		"(d) A's guard connection and walsender terminated ($killed)");
	# A's guard connection goes (and with it the slot's advisory lock); its walsender
	# may not: once A's socket buffer is full it blocks sending to the stopped A,
	# terminated or not, until A reads again
	ok(wait_until(sub { sql(q{SELECT count(*) FROM pg_stat_activity
					WHERE application_name = 'eos_relay_a' AND backend_type <> 'walsender'}) == 0 },
			'A\'s guard connection to end'), '(d) A\'s guard connection is gone: the slot\'s advisory lock is free');
	note('(d) A\'s walsender: ' . (sql(q{SELECT count(*) FROM pg_stat_activity WHERE application_name = 'eos_relay_a'})
		  ? 'still there, blocked sending to the stopped relay' : 'gone'));
	$c->{conn} = $node->connstr($c->{db}) . ' application_name=eos_relay_b';
	my $rb = relay($c, '-v');
	ok($rb->wait_for_log(qr/Kafka transactions initialised \(transactional\.id "\Q$tid\E"\)/),
		'(d) relay B takes the advisory lock and initialises the same transactional.id (fencing A)');
	my $more = insert_lsn();
	ok(wait_until(sub { wal_grew($more, 100000) }, 'more writes'), '(d) the writers commit more');
	$ra->kill('CONT');
	my $status = $ra->finish(120);
	is($status, 1, '(d) after SIGCONT relay A exits 1');
	like($ra->log_content,
		qr/ERROR .*fenced: another cdc-relay with transactional\.id "\Q$tid\E" started \(Kafka: .*\); this instance stops and confirms nothing more/,
		'(d) ... logging that it was fenced');
	ok($rb->wait_for_log(qr/streaming from slot "$c->{slot}" (into Kafka|again)/), '(d) relay B streams from the slot');
	wait_progress($c, 100000, 'relay B goes on');
	unlike($rb->log_content, qr/fenced/, '(d) relay B was not fenced');
	finish_load($c, $rb, $writers);
	check_case($c);
	note(sprintf('(d) done at %.0f s', time() - $t_start));
}

# ---- (e) a Kafka transaction aborted by the broker's timeout ------------------------------
if ($run{e})
{
	my $c = new_case('e');
	my @x = ('-X', 'transaction.timeout.ms=5000');
	my $relay = relay($c, @x);
	streaming($c, $relay, 'snapshot taken, the relay streams') or BAIL_OUT('the relay did not start');
	my $writers = shop_writers($node, $c->{db}, %shop_size, pgbench => [ '-T', '900', '-R', '200' ]);
	wait_progress($c, 200000, 'the relay confirms while the writers run');
	my $t0 = time();
	ok(stop_in_transaction($c, $relay), '(e) the relay stopped (SIGSTOP) with a Kafka transaction open');
	ok(wait_until(sub { !$k->open_transaction(table_topics($c)) }, 'the broker to abort the transaction', 60),
		'(e) the broker aborts the open transaction (transaction.timeout.ms=5000)');
	note(sprintf('(e) the broker aborted it %.1f s after SIGSTOP', time() - $t0));
	my $before = length($relay->log_content);
	$relay->kill('CONT');
	# the outcome, not its first sign: the abort is logged before aborting turns out
	# to be impossible (fenced) and the relay exits; an abort that worked ends in a
	# reconnect
	ok(wait_until(sub { substr($relay->log_content, $before) =~ /reconnected; streaming from slot/ || !$relay->alive },
			'the relay to re-send or exit', 60), '(e) after SIGCONT the relay notices');
	if ($relay->alive)
	{
		like($relay->log_content, qr/WARNING .*Kafka transaction aborted: .*; re-sending from [0-9A-F]+\/[0-9A-F]+/,
			'(e) the relay logs the abort and re-sends from the slot');
		diag('(e) the relay aborted and re-sent: '
			  . join(' | ', grep { /Kafka transaction aborted/ } split /\n/, $relay->log_content));
	}
	else
	{
		my $status = $relay->finish;
		isnt($status, 0, "(e) the relay exited non-zero ($status)");
		diag("(e) the relay exited with status $status: "
			  . join(' | ', grep { /ERROR|WARNING/ } split /\n/, $relay->log_content));
		# the spec's own example of an abortable error; if the relay stops instead, it
		# must not blame an instance that does not exist
		unlike($relay->log_content, qr/fenced: another cdc-relay/,
			'(e) ... without saying that another cdc-relay started (none did: the broker aborted the transaction)');
		$relay = relay($c, @x);
		streaming($c, $relay, 'the restarted relay streams');
	}
	wait_progress($c, 200000, 'the relay confirms the writers\' work after that');
	finish_load($c, $relay, $writers);
	check_case($c);
	note(sprintf('(e) done at %.0f s', time() - $t_start));
}

# ---- (h) injected errors on the test broker -----------------------------------------------
if ($run{h})
{
	my $c = new_case('h', shop => 0);
	sql('CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL)', $c->{db});
	my $broker = start_broker();
	my @args = ({ dbname => $c->{db}, name => 'relay_h' }, '-S', $c->{slot}, '--topic-prefix', $c->{prefix},
		'--snapshot', 'never', '--heartbeat-interval', '0', @eos);
	my $relay = start_relay($node, $broker, @args);
	ok($relay->wait_for_log(qr/streaming from slot "$c->{slot}" into Kafka/), '(h) the relay streams into the test broker')
	  or BAIL_OUT('the relay did not start');
	my $cp = confirmed_flush($node, $c->{slot}, $c->{db});
	my $id = 0;
	my %outcome;
	# librdkafka 2.0.2's kind of each error (rdkafka_txnmgr.c, rdkafka_request.c), and so
	# what the relay must do: retry (librdkafka retries, the relay sees nothing), abort
	# (abort the Kafka transaction, re-read from the slot) or fatal (exit 1)
	for my $inj ([ 'EndTxn', 'CONCURRENT_TRANSACTIONS', 3, 'retry' ], [ 'EndTxn', 'NOT_COORDINATOR', 1, 'retry' ],
		[ 'EndTxn', 'UNKNOWN_PRODUCER_ID', 1, 'abort' ], [ 'EndTxn', 'TRANSACTION_COORDINATOR_FENCED', 1, 'abort' ],
		[ 'EndTxn', 'INVALID_TXN_STATE', 1, 'fatal' ], [ 'Produce', 'UNKNOWN_PRODUCER_ID', 1, 'abort' ],
		[ 'Produce', 'INVALID_RECORD', 1, 'fatal' ], [ 'Produce', 'NOT_LEADER_OR_FOLLOWER', 3, 'retry' ])
	{
		my ($api, $err, $count, $kind) = @$inj;
		my $what = "$api $err";
		my $mark = length($relay->log_content);
		like($broker->command("error $api $err $count"), qr/^ok/, "(h) $what: injected");
		for (1 .. 5)
		{
			sql('BEGIN;' . join(';', map { $id++; "INSERT INTO t VALUES ($id, '$what')" } 1 .. 20) . ';COMMIT',
				$c->{db});
		}
		my $end = insert_lsn();
		ok(wait_until(sub { !$relay->alive || lsn_cmp(confirmed_flush($node, $c->{slot}, $c->{db}), $end) >= 0 },
				"the relay to confirm or exit after $what", 90), "(h) $what: the relay confirms the rows or exits");
		my $log = substr($relay->log_content, $mark);
		my @said = grep { /WARNING|ERROR/ } split /\n/, $log;
		if ($relay->alive)
		{
			$outcome{$what} = $log =~ /Kafka transaction aborted: .*; re-sending from \S+/ ? 'abort'
			  : $log =~ /a Kafka delivery failed .*; re-reading from the slot's confirmed position/ ? 'abort'
			  : $log =~ /aborted|re-reading|re-sending|fatal/ ? 'unexpected' : 'retry';
			# A Produce request failed with a retriable error while later ones of the same
			# producer were in flight (a loaded machine) makes librdkafka see skipped
			# sequence numbers: it then needs an epoch bump, which the relay gets by
			# aborting and re-sending. Safe (the delivery check below still holds), so
			# accepted for that injection, with the reason in the log.
			my $alt = $what eq 'Produce NOT_LEADER_OR_FOLLOWER' && $outcome{$what} eq 'abort'
			  && $log =~ /OUT_OF_ORDER_SEQUENCE_NUMBER/;
			ok($outcome{$what} eq $kind || $alt,
				"(h) $what: the relay recovers ($kind" . ($alt ? ', or aborts and re-sends after OUT_OF_ORDER_SEQUENCE_NUMBER' : '') . ')')
			  or diag("got $outcome{$what}");
		}
		else
		{
			my $status = $relay->finish;
			$outcome{$what} = "exit $status";
			is('fatal', $kind, "(h) $what: the relay exits (fatal)");
			is($status, 1, "(h) $what: the relay exits 1");
			like($log, qr/ERROR .*(fatal Kafka error( while [^:]*)?: |Kafka rejected a message for good: )/,
				"(h) $what: ... logging \"fatal Kafka error\" (or a message rejected for good)");
			$relay = start_relay($node, $broker, @args);
			ok($relay->wait_for_log(qr/streaming from slot "$c->{slot}" into Kafka/), "(h) $what: the restarted relay streams");
			ok(wait_for_confirmed($node, $c->{slot}, $end), "(h) $what: ... and confirms the rows");
		}
		$outcome{$what} .= ': ' . (@said ? join(' | ', map { s/^\S+ \S+ //r } @said) : 'nothing logged');
		diag("(h) $what -> $outcome{$what}");
	}
	is($relay->stop, 0, '(h) the relay exits 0 on SIGTERM');
	my @msgs = consume($broker, "$c->{prefix}.public.t");
	my ($errors, $st) = check_delivered(slot_changes($node, 'audit', from => $cp, dbname => $c->{db}), \@msgs,
		prefix => $c->{prefix});
	is(scalar(@$errors), 0, '(h) every committed change is in the test broker (which keeps aborted messages too)')
	  or diag(first10(@$errors));
	is($st->{changes}, $id, "(h) ($id changes)");
	note("(h) $st->{copies} copies (aborted or re-sent)");
	sql("SELECT pg_drop_replication_slot('audit')", $c->{db});
	$broker->stop;
	note(sprintf('(h) done at %.0f s', time() - $t_start));
}

# VmHWM (peak resident set) of a process, in kB
sub vm_hwm
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/status") or return undef;
	my ($hwm) = map { /^VmHWM:\s+(\d+) kB/ ? ($1) : () } <$fh>;
	close $fh;
	return $hwm;
}

# scan_changes($topic, $below): the change events of a large one-partition table topic
# (read_committed) by event_id: {commit_lsn => {n => distinct seqs, dup => copies, min,
# max, below => how many of the distinct ones are at offsets below $below}, bad => lines
# without an event_id}
sub scan_changes
{
	my ($topic, $below) = @_;
	my (%s, %bits);
	$s{bad} = 0;
	scan_topic($k, $topic, '%o %h', sub {
			my ($o, $clsn, $seq) = $_[0] =~ m{^(\d+) (?:.*,)?event_id=([0-9A-F]+/[0-9A-F]+)/(\d+)(?:,|$)};
			if (!defined $seq)
			{
				$s{bad}++;
				return;
			}
			my $e = $s{$clsn} //= { n => 0, dup => 0, min => $seq, max => $seq, below => 0 };
			if (vec($bits{$clsn} //= '', $seq, 1))
			{
				$e->{dup}++;
			}
			else
			{
				vec($bits{$clsn}, $seq, 1) = 1;
				$e->{n}++;
				$e->{below}++ if defined $below && $o < $below;
			}
			$e->{min} = $seq if $seq < $e->{min};
			$e->{max} = $seq if $seq > $e->{max};
		});
	return \%s;
}

# whole($scan, $clsn): "N distinct seqs MIN..MAX, C copies" of the transaction committed at $clsn
sub whole
{
	my ($s, $clsn) = @_;
	my $e = $s->{$clsn} // { n => 0, dup => 0, min => 0, max => 0 };
	return "$e->{n} distinct seqs $e->{min}..$e->{max}, $e->{dup} copies";
}

sub rss_ok
{
	my ($relay, $what) = @_;
	my $hwm = vm_hwm($relay->{pid});
	return ok(defined $hwm && $hwm <= $rss_limit_kb, "(f) $what: " . sprintf('%.1f MB', ($hwm // 0) / 1024));
}

# the begin and end records of xid $xid in $c's transactions topic: (\@ops, end value or {})
sub txn_records
{
	my ($c, $xid) = @_;
	my @tx = grep { ($_->{key} // '') eq $xid } consume($k, "$c->{prefix}.transactions");
	my ($end) = map { $json->decode($_->{value}) } grep { ($_->{headers}{op} // '') eq 'commit' } @tx;
	return ([ map { $_->{headers}{op} // '?' } @tx ], $end // {});
}

# ---- (f) large transactions ---------------------------------------------------------------
if ($run{f})
{
	my $c = new_case('f', shop => 0, audit => 0);
	sql('CREATE TABLE narrow (id int PRIMARY KEY, v int NOT NULL)', $c->{db});
	my $topic = "$c->{prefix}.public.narrow";
	my @args = ({ dbname => $c->{db}, name => 'relay_f' }, '-S', $c->{slot}, '--topic-prefix', $c->{prefix},
		'--topic-partitions', '1', '--snapshot', 'never', '--heartbeat-interval', '0', @eos);
	my $relay = start_relay($node, $k, @args);
	ok($relay->wait_for_log(qr/streaming from slot "$c->{slot}" into Kafka/), '(f) the relay streams')
	  or BAIL_OUT('the relay did not start');

	my $t0 = time();
	my $xid1 = sql(qq{BEGIN; INSERT INTO narrow SELECT g, g % 1000 FROM generate_series(1, $large_rows) g;
		SELECT txid_current(); COMMIT;}, $c->{db});
	my $end1 = insert_lsn();
	note(sprintf('(f) inserted %d rows in one transaction (xid %s) in %.1f s', $large_rows, $xid1, time() - $t0));
	ok(wait_for_confirmed($node, $c->{slot}, $end1, 600), '(f) the relay confirms the transaction');
	note(sprintf('(f) relayed in %.1f s', time() - $t0));
	rss_ok($relay, "the relay's peak RSS (VmHWM) is at most 100 MB");
	my ($ops1, $e1) = txn_records($c, $xid1);
	is("@$ops1", 'begin commit', '(f) one begin and one end record');
	my $clsn1 = $e1->{commit_lsn} // '?';
	is(join(' ', map { $_ // 'none' } @$e1{qw(events messages)}) . ' ' . $json->encode($e1->{tables} // {}),
		"$large_rows 0 {\"public.narrow\":$large_rows}", '(f) the end record counts every event');

	# the second one, and a kill -9 while it is streamed
	my $lso0 = $k->end_offsets($topic)->{0} // 0;
	$t0 = time();
	my $xid2 = sql(qq{BEGIN; INSERT INTO narrow SELECT g, g % 1000 FROM generate_series($large_rows + 1, 2 * $large_rows) g;
		SELECT txid_current(); COMMIT;}, $c->{db});
	my $end2 = insert_lsn();
	note(sprintf('(f) inserted %d more rows in one transaction (xid %s) in %.1f s', $large_rows, $xid2, time() - $t0));
	ok(wait_until(sub { ($k->end_offsets($topic)->{0} // 0) > $lso0 + 50000 },
			'part of the second transaction to be committed in Kafka', 300),
		'(f) part of the second transaction is visible to read_committed');
	rss_ok($relay, 'its peak RSS is still at most 100 MB');
	$relay->kill('KILL');
	is($relay->finish, 128 + 9, '(f) kill -9 of the relay while it streams the second transaction');
	# what read_committed sees now: the offsets below the last stable offset
	my $lso1 = $k->end_offsets($topic)->{0} // 0;
	my ($ops2, $e2) = txn_records($c, $xid2);
	is("@$ops2", 'begin', '(f) the second transaction\'s begin record is visible, its end record not');
	my @st = state_records($c);
	my $last = $st[-1] // {};
	my $partial = ($last->{partial}{commit_lsn} // 'none') . ' seq ' . ($last->{partial}{seq} // 'none');
	my $confirmed = $last->{confirmed_lsn} // 'none';

	$relay = start_relay($node, $k, @args);
	ok($relay->wait_for_log(qr/streaming from slot "$c->{slot}" into Kafka/), '(f) a new relay streams');
	ok(wait_for_confirmed($node, $c->{slot}, $end2, 600), '(f) ... and confirms the second transaction');
	rss_ok($relay, "the restarted relay's peak RSS is at most 100 MB");
	is($relay->stop, 0, '(f) the relay exits 0 on SIGTERM');
	($ops2, $e2) = txn_records($c, $xid2);
	my $clsn2 = $e2->{commit_lsn} // '?';
	is("@$ops2 " . ($e2->{events} // 'none'), "begin commit $large_rows",
		'(f) the second transaction has one begin and one end record, events = 1000000');

	my $s = scan_changes($topic, $lso1);
	my $part = $s->{$clsn2}{below} // 0;
	ok($part > 0 && $part < $large_rows, "(f) at the kill, read_committed saw part of the second transaction ($part events)");
	is($partial, "$clsn2 seq $part", '(f) ... and the last committed checkpoint was "partial" at exactly those events');
	ok(lsn_num($confirmed) && lsn_cmp($confirmed, $e1->{end_lsn} // '0/0') >= 0 && lsn_cmp($confirmed, $clsn2) < 0,
		"(f) ... with confirmed_lsn $confirmed between the end of the first transaction ("
		  . ($e1->{end_lsn} // 'none') . ") and the second's commit ($clsn2)");
	is(whole($s, $clsn1) . '; ' . whole($s, $clsn2),
		"$large_rows distinct seqs 1..$large_rows, 0 copies; $large_rows distinct seqs 1..$large_rows, 0 copies",
		'(f) both transactions are in Kafka exactly once (read_committed)');
	is(join(' ', sort grep { $_ ne 'bad' } keys %$s) . " bad $s->{bad}", join(' ', sort($clsn1, $clsn2)) . ' bad 0',
		'(f) ... and nothing else');
	note(sprintf('(f) done at %.0f s', time() - $t_start));
}

# ---- (g) crash during the snapshot --------------------------------------------------------
if ($run{g})
{
	my $c = new_case('g', shop => 0, audit => 0);
	my $t0 = time();
	sql(qq{CREATE TABLE snap (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO snap SELECT g, g % 997 FROM generate_series(1, $snap_rows) g; ANALYZE snap}, $c->{db});
	note(sprintf('(g) %d rows written in %.1f s', $snap_rows, time() - $t0));
	my $topic = "$c->{prefix}.public.snap";
	my @args = ({ dbname => $c->{db}, name => 'relay_g' }, '-S', $c->{slot}, '--topic-prefix', $c->{prefix},
		'--heartbeat-interval', '0', @eos);
	my $relay = start_relay($node, $k, @args);
	ok($relay->wait_for_log(qr/snapshot at /), '(g) the snapshot starts');
	my $batches = sub { return () = $relay->log_content =~ /snapshot batch committed:/g; };
	ok(wait_until(sub { $batches->() >= 1 || !$relay->alive || $relay->log_content =~ /snapshot complete/ },
			'a first snapshot batch', 120),
		'(g) a first snapshot batch is committed');
	my $n0 = $batches->();
	ok(wait_until(sub { $batches->() > $n0 || !$relay->alive || $relay->log_content =~ /snapshot complete/ },
			'the next snapshot batch', 120),
		'(g) then another');
	$relay->kill('KILL');
	is($relay->finish, 128 + 9, '(g) kill -9 of the relay right after it logged a committed batch');
	my $log = $relay->log_content;
	unlike($log, qr/snapshot complete/, '(g) the snapshot had not completed');
	my @totals = $log =~ /snapshot batch committed:\D*(\d+)/g;
	my ($cp1) = $log =~ /created replication slot "$c->{slot}", consistent point (\S+?),/;
	note('(g) totals logged: ' . join(' ', @totals));
	my %seen;
	my ($rc, $dup, $other) = (0, 0, 0);
	scan_topic($k, $topic, '%h', sub {
			my ($id) = $_[0] =~ m{(?:^|,)event_id=([^,]+)};
			if (($id // '') =~ m{^\Q$cp1\E/r/})
			{
				$seen{$id}++ ? $dup++ : $rc++;
			}
			else
			{
				$other++;
			}
		});
	my $ru = 0;
	scan_topic($k, $topic, '%o', sub { $ru++ }, isolation => 'read_uncommitted');
	is("$rc rows, $dup copies, $other others", ($totals[-1] // 'none') . ' rows, 0 copies, 0 others',
		'(g) read_committed: the rows of the last batch total the relay logged, each once');
	cmp_ok($ru, '>=', $rc, "(g) read_uncommitted: at least as many ($ru)");
	%seen = ();

	$relay = start_relay($node, $k, @args);
	ok($relay->wait_for_log(qr/streaming from slot "$c->{slot}" into Kafka/, 600),
		'(g) the next start takes the snapshot again and streams');
	$log = $relay->log_content;
	like($log, qr/dropping slot "$c->{slot}" to take a new snapshot/, '(g) ... after dropping the slot');
	my ($cp2) = $log =~ /created replication slot "$c->{slot}", consistent point (\S+?),/;
	ok(defined $cp2 && $cp2 ne $cp1, '(g) ... at a new consistent point (' . ($cp2 // 'none') . ", was $cp1)");
	sql(q{UPDATE snap SET v = v + 1000 WHERE id % 500 = 0; DELETE FROM snap WHERE id % 700 = 1;
		INSERT INTO snap VALUES (-1, 1)}, $c->{db});
	my $end = insert_lsn();
	ok(wait_for_confirmed($node, $c->{slot}, $end), '(g) the relay confirms later changes');
	is($relay->stop, 0, '(g) the relay exits 0 on SIGTERM');

	# Kafka: per key, the last value (vec of 32-bit v + 1; 0: none; the -1 row apart)
	my ($kafka, $table, $r2, $r2dup, $r1, $bad) = ('', '', 0, 0, 0, 0);
	my %extra;
	scan_topic($k, $topic, '%k\t%s', sub {
			my ($key, $value) = split /\t/, $_[0], 2;
			my ($id) = $key =~ /^\{"id":(-?\d+)\}$/ or do { $bad++; return };
			my $v;
			if ($value eq '' || $value =~ /^\{"op":"d"/)
			{
				$v = 0;
			}
			elsif ($value =~ /"after":\{"id":-?\d+,"v":(\d+)\}/)
			{
				$v = $1 + 1;
			}
			else
			{
				$bad++;
				return;
			}
			if ($value =~ /^\{"op":"r".*"lsn":"([^"]+)"/)
			{
				if ($1 eq $cp2)
				{
					$seen{$id}++ ? $r2dup++ : $r2++;
				}
				else
				{
					$r1++;
				}
			}
			$id < 0 ? ($extra{$id} = $v) : (vec($kafka, $id, 32) = $v);
		});
	for my $line (split /\n/, sql('SELECT id, v FROM snap', $c->{db}))
	{
		my ($id, $v) = split /\|/, $line;
		$id < 0 ? ($extra{"t$id"} = $v + 1) : (vec($table, $id, 32) = $v + 1);
	}
	is("$r2 rows, $r2dup copies", "$snap_rows rows, 0 copies", "(g) the new snapshot published every row once ($cp2)");
	is($r1, $rc, '(g) the interrupted snapshot\'s rows are only its committed batches');
	is($bad, 0, '(g) every message is a row of the table');
	my $same = $kafka eq $table && ($extra{-1} // 'none') eq ($extra{'t-1'} // 'none');
	ok($same, '(g) the last record per key equals the table');
	if (!$same)
	{
		my @diff;
		for my $id (1 .. $snap_rows)
		{
			next if vec($kafka, $id, 32) == vec($table, $id, 32);
			push @diff, "id $id: kafka " . vec($kafka, $id, 32) . ' table ' . vec($table, $id, 32);
			last if @diff >= 10;
		}
		diag("(g) differences (v + 1; 0: none): @diff");
	}
	note(sprintf('(g) done at %.0f s', time() - $t_start));
}

$k->stop;
$node->stop;
diag(sprintf('116_exactly_once: %.0f s', time() - $t_start));
done_testing();
