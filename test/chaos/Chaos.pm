# test/chaos/Chaos.pm: the chaos test of the relay (issue 9): pgbench writers on
# PostgreSQL 15, the relay streaming into a real 3-node Kafka cluster, and a driver that
# injects faults at random moments; then a checker that reads every topic with kcat
# (isolation.level=read_committed) and compares with what PostgreSQL committed.  A short
# phase against the test broker (`cdc-relay broker`) injects Produce and EndTxn errors.
#
#   use Chaos;
#   my $r = Chaos::run(rounds => 24, seed => 1234);   # TAP checks, diag of the summary
#   like($r->{line}, ...);                            # one line, see summary_line
#
# Used by test/chaos/chaos.pl (`make chaos`, the full run) and test/tap/117_chaos.pl (a
# short run inside make test, plus a self-check that the checker can fail).
#
# The workload (test/chaos/*.sql, pgbench scripts, weights in WRITER_SCRIPTS): transactions
# across several tables (upserts, updates, deletes, primary-key changes), rolled-back
# transactions, rolled-back savepoints, transactional and non-transactional logical
# messages, and, from a second pgbench with one client at a low rate, large transactions
# (bulk.sql, some rolled back).  Rolled-back work writes the marker ROLLEDBACK wherever a
# value can hold it.  The tables are filled before the relay starts, so it begins with a
# snapshot, under the writers' load.
#
# The independent record: an audit slot (the cdc_relay plugin), created before the
# writers start and read at the end with pg_logical_slot_peek_changes: every committed
# event (insert, update, delete, logical message), its event id (<commit_lsn>/<seq>, or
# <lsn>/0 for a non-transactional message), its table, the md5 of its JSON, and each
# transaction's counts.  Nothing of the relay's code is used to read Kafka or PostgreSQL.
#
# Faults (one per round, at a random moment, then the driver waits until the relay's
# slot is confirmed past the WAL position taken after the fault):
#   relay-kill     kill -9 of the relay, restart after 0-2 s
#   relay-kill-split  a transaction of 20,000 inserts (split_rows), which the relay splits
#                  over Kafka transactions (--txn-max-messages 1000, txn_max); kill -9 of
#                  the relay once 3 x txn_max of its records are in Kafka, restart (the
#                  "partial" checkpoint)
#   kafka-kill     kill -9 of a random node, restart after 1-5 s, wait for full ISR
#   kafka-pause    SIGSTOP of a random node's JVM for 2-5 s (a GC pause), SIGCONT
#   pg-fast        PostgreSQL restarted in fast mode (the writers are restarted)
#   pg-immediate   PostgreSQL restarted in immediate mode (crash recovery)
#   snapshot-kill  (before the rounds, when relay-kill is among the kinds) kill -9 of the
#                  relay during its snapshot, once 3 x txn_max rows of doc are in Kafka
#                  (the relay is slowed down: one message per batch)
#   mock-produce, mock-endtxn (the mock phase) injected request errors
# Topics: 3 partitions, replication factor 3, min.insync.replicas=2 (the 3-node cluster's
# defaults, also given to the relay).
#
# The checker (check()): for the stream (changes committed at or after the relay's
# consistent point):
#   lost            committed events not in Kafka
#   duplicated      events (and begin/end records, snapshot rows) in Kafka more than once
#   out of order    per topic and key, a (commit_lsn, seq) not after the previous one
#                   (RelayTest::check_key_order for table topics: also snapshot rows
#                   first, a tombstone after each delete)
#   partial transactions  a transaction with events whose begin or end record in
#                   <prefix>.transactions is missing, or whose end record's events /
#                   tables / messages differ from what the audit slot and the topics hold
#   rolled back     messages holding the marker, or events no committed transaction has
#   altered         events whose value differs from the plugin's JSON, or in another topic
#   state mismatches  keys whose last record differs from the table (rows of an
#                   interrupted snapshot deleted before the next one aside: documented,
#                   README "Delivery guarantees"); for the keyless table, the row count
# plus, from the driver: stalls (the relay did not confirm past a fault within
# STALL_SECONDS) and relay exits (the relay stopped without being killed; on the mock,
# after an injected error, that is the expected reaction and counted apart).
#
# Atomic visibility (a transaction's events all visible at once) is checked only as
# completeness at the end: Kafka writes the commit markers to each partition
# asynchronously, so reading topics one after the other while the relay runs could show
# part of a committed transaction without anything being wrong.
#
# The mock phase (database mockdb, topics mock.*): a seeded deck of errors injected into
# the test broker, `error produce|endtxn CODE COUNT`: ones the producer retries
# (NOT_LEADER_FOR_PARTITION, NOT_ENOUGH_REPLICAS, REQUEST_TIMED_OUT, NOT_COORDINATOR,
# COORDINATOR_NOT_AVAILABLE, CONCURRENT_TRANSACTIONS), one that aborts the Kafka
# transaction (EndTxn UNKNOWN_PRODUCER_ID: the relay re-sends from its checkpoint) and
# fatal ones (Produce OUT_OF_ORDER_SEQUENCE_NUMBER, EndTxn INVALID_TXN_STATE: the relay
# exits 1 and the driver starts it again).  The mock (librdkafka 2.0.2's mock cluster)
# does not hide aborted transactions from read_committed consumers: there copies are
# expected and not counted, and the transaction records are not checked; lost, out of
# order, rolled back, altered and state mismatches are, and that the relay recovers.
package Chaos;

use strict;
use warnings;

use Digest::MD5 qw(md5_hex);
use File::Basename qw(dirname);
use File::Spec;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(time sleep);
use Test::More;
use PostgreSQL::Test::Utils;
use PostgreSQL::Test::Cluster;
use RelayTest;
use KafkaCluster;

my $here = dirname(File::Spec->rel2abs(__FILE__));
my $json = JSON::PP->new->canonical;

use constant MARKER => 'ROLLEDBACK';
use constant HEARTBEAT_PREFIX => 'cdc_relay.heartbeat';
use constant STALL_SECONDS => 300;

# the writers' scripts and weights (pgbench -f FILE@WEIGHT)
use constant WRITER_SCRIPTS => [ [ 'multi', 10 ], [ 'keys', 3 ], [ 'rollback', 2 ], [ 'savepoint', 3 ],
	[ 'message', 1 ] ];

# keyed tables and their key columns; the keyless one
my %KEYED = (acct => ['id'], item => [ 'grp', 'n' ], doc => ['id'], bulk => ['id']);
my @KEYLESS = ('journal');

our @COUNTERS = ('lost', 'duplicated', 'out of order', 'partial transactions', 'rolled back', 'altered',
	'state mismatches', 'stalls', 'relay exits');

=pod

=item Chaos::rng($seed)

A small seeded generator (an LCG, independent of Perl's rand, which other modules use):
returns a sub giving numbers in [0, 1).

=cut

sub rng
{
	my ($seed) = @_;
	my $s = $seed % 2147483648;
	return sub {
		$s = ($s * 1103515245 + 12345) % 2147483648;
		return $s / 2147483648;
	};
}

# between($c, $lo, $hi): a random number in [lo, hi)
sub between
{
	my ($c, $lo, $hi) = @_;
	return $lo + $c->{rng}->() * ($hi - $lo);
}

=pod

=item Chaos::relay_supports_eo()

True when the relay under test has `--delivery` (issue 9's exactly-once).

=cut

sub relay_supports_eo
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ RelayTest::relay_bin(), 'run', '--help' ], '<', \undef, '>', \$out, '2>', \$err);
	return ($out . $err) =~ /--delivery/ ? 1 : 0;
}

sub sql
{
	my ($c, $q, $db) = @_;
	return $c->{node}->safe_psql($db // $c->{db}, $q);
}

sub insert_lsn { return sql($_[0], 'SELECT pg_current_wal_insert_lsn()'); }

# ---------------------------------------------------------------------------
# Writers

# start_writers($c): the mixed writers and the large-transaction writer, on $c->{db}
sub start_writers
{
	my ($c) = @_;
	$c->{segment}++;
	my @common = ('-n', '-T', '3600', '--max-tries', '20', '-D', "docs=$c->{docs}", '-D', "rows=$c->{bulk_rows}",
		'--random-seed', $c->{seed} + $c->{segment});
	my @files = map { ('-f', "$here/$_->[0].sql\@$_->[1]") } @{ WRITER_SCRIPTS() };
	my $conn = $c->{node}->connstr($c->{db});
	$c->{writers} = [
		RelayTest::start_process([ 'pgbench', @common, '-c', '3', '-j', '3', '-R', $c->{rate}, @files, $conn ],
			name => "writers_$c->{db}") ];
	push @{ $c->{writers} },
	  RelayTest::start_process([ 'pgbench', @common, '-c', '1', '-R', $c->{bulk_rate}, '-f', "$here/bulk.sql", $conn ],
		name => "bulk_$c->{db}")
	  if $c->{bulk_rate};
}

# stop_writers($c): SIGTERM, wait; errors in their logs other than lost connections are
# reported (a script that fails would stop a client and bias the workload)
sub stop_writers
{
	my ($c, $expect_lost) = @_;
	for my $w (@{ $c->{writers} // [] })
	{
		$w->kill('TERM');
		$w->finish(60);
		my @errors = grep { !/connection|server closed|terminating|shutting down|starting up|Connection refused|could not send data|no connection|administrator command|run was aborted|recovery mode|backend died/i }
		  grep { /ERROR|FATAL|abort/i } split /\n/, $w->log_content;
		$c->{writer_errors} += @errors;
		diag("writer $w->{log}: " . scalar(@errors) . " unexpected errors, first: $errors[0]") if @errors;
	}
	$c->{writers} = [];
}

# ---------------------------------------------------------------------------
# The relay

sub relay_args
{
	my ($c) = @_;
	my @a = ('--topic-prefix', $c->{prefix}, '-S', $c->{slot}, @{ $c->{extra_args} // [] });
	push @a, '--delivery', 'exactly-once', '--txn-max-messages', $c->{txn_max} if $c->{eo};
	return @a;
}

# start_relay_c($c, @more): a relay for this run; records the consistent points of the
# snapshots it takes
sub start_relay_c
{
	my ($c, @more) = @_;
	my $r = RelayTest::start_relay($c->{node}, $c->{bootstrap}, { dbname => $c->{db}, name => "relay_$c->{prefix}" },
		relay_args($c), @more);
	$c->{relay} = $r;
	push @{ $c->{relays} }, $r;
	return $r;
}

# relay_log_stats($c): what the logs of every relay of the run say about the exactly-once
# machinery (it was exercised, or not)
sub relay_log_stats
{
	my ($c) = @_;
	my %n = (starts => scalar @{ $c->{relays} });
	for my $r (@{ $c->{relays} })
	{
		my $log = $r->log_content;
		$n{'Kafka transactions aborted'} += () = $log =~ /Kafka transaction aborted/g;
		$n{'replays skipped (at clean stops)'} += $1 while $log =~ /(\d+) transactions sent again by the server were in Kafka already and skipped/g;
		$n{'exits with status 1'} += () = $log =~ /cdc-relay exiting with status 1/g;
	}
	return 'relay: ' . join(', ', map { "$_ $n{$_}" } sort keys %n);
}

# relay_streams($c): waits for the relay's "streaming" line (a snapshot first when it takes
# one); notes a new consistent point.  Returns 1 when it streams.
sub relay_streams
{
	my ($c) = @_;
	my $ok = $c->{relay}->wait_for_log(qr/streaming from slot "\Q$c->{slot}\E" into Kafka/, STALL_SECONDS);
	note_cp($c);
	return $ok;
}

# note_cp($c): the consistent point of the snapshot the current relay took, if it took one
sub note_cp
{
	my ($c) = @_;
	if (my ($cp) = $c->{relay}->log_content =~ /created replication slot "\Q$c->{slot}\E", consistent point (\S+?),/)
	{
		push @{ $c->{cps} }, $cp unless grep { $_ eq $cp } @{ $c->{cps} };
	}
}

# check_relay($c): a relay that exited without being asked is counted and restarted
sub check_relay
{
	my ($c, $where) = @_;
	return 1 if $c->{relay}->alive;
	my $st = $c->{relay}->finish;
	my @tail = (split /\n/, $c->{relay}->log_content)[-5 .. -1];
	$c->{exits}++;
	my $say = $c->{exits_expected} ? \&note : \&diag;
	$say->("$where: the relay exited by itself (status " . ($st // 'none') . "):\n" . join("\n", grep { defined } @tail));
	start_relay_c($c);
	return relay_streams($c);
}

# recovered($c, $what): the relay confirms past the WAL position taken now
sub recovered
{
	my ($c, $what) = @_;
	my $mark = insert_lsn($c);
	my $deadline = time() + STALL_SECONDS;
	while (time() < $deadline)
	{
		my $conf = RelayTest::confirmed_flush($c->{node}, $c->{slot}, $c->{db}) // '';
		return 1 if RelayTest::lsn_num($conf) && RelayTest::lsn_cmp($conf, $mark) >= 0;
		check_relay($c, $what) unless $c->{relay}->alive;
		sleep(0.5);
	}
	$c->{stalls}++;
	diag("$what: the relay did not confirm $mark within " . STALL_SECONDS . ' s');
	return 0;
}

# ---------------------------------------------------------------------------
# Faults on the real cluster

# full_isr($c): every partition of the run's topics has all nodes in its ISR
sub full_isr
{
	my ($c) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'kcat', '-L', '-b', $c->{bootstrap}, '-m', '5' ], '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(60));
	my ($topic, $bad, $seen) = ('', 0, 0);
	for (split /\n/, $out)
	{
		$topic = $1 if /^\s*topic "(.*)" with/;
		next unless index($topic, "$c->{prefix}.") == 0 && /partition \d+, leader (-?\d+), replicas: [\d,]*, isrs: ([\d,]*)/;
		$seen++;
		$bad++ if $1 < 0 || split(/,/, $2) < $c->{nodes};
	}
	return $seen && !$bad;
}

sub fault
{
	my ($c, $kind) = @_;
	my $k = $c->{kafka};
	$c->{faults}{$kind}++;
	if ($kind eq 'relay-kill-split')
	{
		# a transaction of split_rows inserts, which the relay splits over Kafka
		# transactions of --txn-max-messages: killed once some of them are in Kafka
		my $topic = "$c->{prefix}.public.bulk";
		my $sum = sub { my $o = $k->end_offsets($topic); my $n = 0; $n += $_ for values %$o; return $n; };
		my $before = $sum->();
		sql($c, "INSERT INTO bulk SELECT nextval('bulk_id_seq'), -1, repeat('s', 40) FROM generate_series(1, "
			  . $c->{split_rows} . ')');
		my $sent = 0;
		RelayTest::wait_until(sub { $sent = $sum->() - $before; $sent >= 3 * $c->{txn_max} },
			'the large transaction on its way into Kafka', 120);
		$c->{relay}->kill('KILL');
		$c->{relay}->finish;
		note(sprintf('relay-kill-split: killed with %d of the transaction\'s %d records in the bulk topic (%s)', $sent,
			$c->{split_rows}, $sent < $c->{split_rows} ? 'in the middle of it' : 'after it'));
		$c->{split_kills}{ $sent < $c->{split_rows} ? 'middle' : 'after' }++;
		start_relay_c($c);
		relay_streams($c) or diag('relay-kill-split: the new relay does not stream');
	}
	elsif ($kind eq 'relay-kill')
	{
		$c->{relay}->kill('KILL');
		$c->{relay}->finish;
		sleep(between($c, 0, 2));
		start_relay_c($c);
		relay_streams($c) or diag('relay-kill: the new relay does not stream');
	}
	elsif ($kind eq 'kafka-kill')
	{
		my $i = 1 + int(between($c, 0, $c->{nodes}));
		$k->kill_node($i);
		sleep(between($c, 1, 5));
		$k->restart_node($i);
		RelayTest::wait_until(sub { full_isr($c) }, "node $i back in every ISR", 120)
		  or note("kafka-kill: node $i not yet in every ISR");
	}
	elsif ($kind eq 'kafka-pause')
	{
		my $i = 1 + int(between($c, 0, $c->{nodes}));
		my $pid = $k->pid($i);
		my $s = between($c, 2, 5);
		note(sprintf('kafka-pause: SIGSTOP node %d (pid %d) for %.1f s', $i, $pid, $s));
		kill('STOP', $pid);
		sleep($s);
		kill('CONT', $pid);
		RelayTest::wait_until(sub { full_isr($c) }, "node $i back in every ISR", 120)
		  or note("kafka-pause: node $i not yet in every ISR");
	}
	elsif ($kind eq 'pg-fast' || $kind eq 'pg-immediate')
	{
		my $mode = $kind eq 'pg-fast' ? 'fast' : 'immediate';
		$c->{node}->stop($mode);
		stop_writers($c);
		$c->{node}->start;
		start_writers($c);
	}
	else
	{
		die "unknown fault $kind";
	}
}

# schedule($c, $n): the round's faults: a seeded shuffle of every kind first (so that a
# short run covers them), then random ones
sub schedule
{
	my ($c, $n) = @_;
	my @kinds = @{ $c->{kinds} };
	my @deck = @kinds;
	for (my $i = $#deck; $i > 0; $i--)
	{
		my $j = int(between($c, 0, $i + 1));
		@deck[ $i, $j ] = @deck[ $j, $i ];
	}
	my @s;
	push @s, $_ < @deck ? $deck[$_] : $kinds[ int(between($c, 0, scalar @kinds)) ] for 0 .. $n - 1;
	return @s;
}

# ---------------------------------------------------------------------------
# The checker

=pod

=item Chaos::audit_events($node, $db, $slot, $cp, $prefix)

The committed stream as the audit slot holds it (pg_logical_slot_peek_changes, the
cdc_relay plugin's own events), from the consistent point $cp on: returns (\%events,
\%txns): event id => [topic, md5 of the event JSON, commit_lsn or '' for a
non-transactional message]; commit_lsn => {xid, events, messages, tables => {schema.table
=> n}} for every transaction with at least one event the relay forwards.  The relay's
heartbeats are left out (it does not forward them).  Dies on a truncate (not in the
workload).

=cut

sub audit_events
{
	my ($node, $db, $slot, $cp, $prefix) = @_;
	my $out = $node->safe_psql($db, qq{
SELECT e->>'op', coalesce(e->>'commit_lsn', ''), coalesce(e->>'seq', ''), coalesce(e->>'lsn', ''),
       coalesce((e->>'schema') || '.' || (e->>'table'), ''), coalesce(e->>'xid', ''),
       coalesce(e->>'prefix', ''), coalesce(e->>'transactional', ''), md5(data)
FROM (SELECT data, data::jsonb AS e FROM pg_logical_slot_peek_changes('$slot', NULL, NULL)) c
WHERE e->>'op' NOT IN ('begin', 'commit')});
	my $cpn = RelayTest::lsn_num($cp);
	my (%ev, %tx);
	for my $line (split /\n/, $out)
	{
		my ($op, $clsn, $seq, $lsn, $table, $xid, $mprefix, $tr, $md5) = split /\|/, $line, 9;
		die "audit: a truncate in the workload" if $op eq 't';
		next if $op eq 'm' && $mprefix eq HEARTBEAT_PREFIX;
		my ($id, $topic, $txn);
		if ($op eq 'm' && $tr eq 'false')
		{
			next if RelayTest::lsn_num($lsn) < $cpn;
			($id, $topic, $txn) = ("$lsn/0", "$prefix.messages", '');
		}
		else
		{
			next if RelayTest::lsn_num($clsn) < $cpn;
			($id, $topic, $txn) = ("$clsn/$seq", $op eq 'm' ? "$prefix.messages" : "$prefix.$table", $clsn);
			my $t = $tx{$clsn} //= { xid => $xid, events => 0, messages => 0, tables => {} };
			$t->{events}++;
			$op eq 'm' ? $t->{messages}++ : $t->{tables}{$table}++;
		}
		die "audit: two events $id" if exists $ev{$id};
		$ev{$id} = [ $topic, $md5, $txn ];
	}
	return (\%ev, \%tx);
}

# kafka_topics($bootstrap, $prefix): the run's topics (kcat -L)
sub kafka_topics
{
	my ($bootstrap, $prefix) = @_;
	return grep { index($_, "$prefix.") == 0 } RelayTest::topics($bootstrap);
}

=pod

=item Chaos::check(%a)

Reads every topic of the run (kcat, isolation.level=read_committed) and returns the
counters of summary_line (lost, duplicated, ...) plus {events => committed events
checked, copies => duplicates seen (also when not counted)}.  %a: node, db, audit (slot),
bootstrap, prefix, cps => [consistent points, the last the one the stream starts at], mock
=> 1 (duplicates and transaction records not checked), copies_allowed => 1 (at-least-once:
duplicates not counted), txn_records => 1
(the transactions topic must exist), drop => event id (the self-check: treat that event
as missing from Kafka).  Problems go to diag (the first few of each kind).

=cut

sub check
{
	my (%a) = @_;
	my ($node, $db, $prefix) = @a{qw(node db prefix)};
	my @cps = @{ $a{cps} };
	my $cp = $cps[-1];
	my @aborted = @cps[ 0 .. $#cps - 1 ];
	my %n = map { ($_ => 0) } @COUNTERS;
	my %shown;
	my $problem = sub {
		my ($what, $msg) = @_;
		$n{$what}++;
		diag("$what: $msg") if $shown{$what}++ < 5;
	};
	my ($ev, $tx) = audit_events($node, $db, $a{audit}, $cp, $prefix);
	$n{events} = scalar keys %$ev;
	$n{txns} = scalar keys %$tx;
	$n{large} = grep { $_->{events} > ($a{txn_max} // 1e9) } values %$tx;
	$n{copies} = 0;
	my (%seen, %ktx, %snap);
	my @topics = kafka_topics($a{bootstrap}, $prefix);
	for my $table (sort(keys %KEYED), @KEYLESS, 'messages')
	{
		my $topic = $table eq 'messages' ? "$prefix.messages" : "$prefix.public.$table";
		my @msgs = RelayTest::consume($a{bootstrap}, $topic, isolation => 'read_committed');
		my (%order, $rows, $changes);
		for my $m (@msgs)
		{
			my $where = "$topic [$m->{partition}] offset $m->{offset}";
			$problem->('rolled back', "$where holds " . MARKER . ': ' . substr($m->{value}, 0, 200))
			  if defined $m->{value} && index($m->{value}, MARKER) >= 0;
			next unless defined $m->{value};
			my $h = $m->{headers};
			my $id = $h->{event_id} // '';
			# relays before issue 9 gave a non-transactional message no event_id
			$id = "$h->{commit_lsn}/0" if $id eq '' && !$a{txn_records} && ($h->{op} // '') eq 'm';
			if (($h->{op} // '') eq 'r')
			{
				$rows++ if $id =~ m{^\Q$cp\E/r/};
				if ($snap{$id}++)
				{
					$n{copies}++;
					$problem->('duplicated', "$where: snapshot row $id again") unless $a{mock} || $a{copies_allowed};
				}
				next;
			}
			next if defined $a{drop} && $id eq $a{drop};
			my $e = $ev->{$id};
			if (!$e)
			{
				$problem->('rolled back', "$where: event $id is no committed event of the stream");
				next;
			}
			$problem->('altered', "$where: event $id belongs in $e->[0]") if $e->[0] ne $topic;
			$problem->('altered', "$where: event $id differs from the plugin's") if md5_hex($m->{value}) ne $e->[1];
			if ($seen{$id}++)
			{
				$n{copies}++;
				$problem->('duplicated', "$where: event $id again") unless $a{mock} || $a{copies_allowed};
				next;
			}
			$changes++ if ($h->{op} // '') eq 'c';
			if ($e->[2] ne '')
			{
				$table eq 'messages' ? $ktx{ $e->[2] }{messages}++ : $ktx{ $e->[2] }{tables}{"public.$table"}++;
			}
			if ($table eq 'messages')
			{
				# per prefix (the key), (commit_lsn or lsn, seq) increasing
				my ($l, $s) = $id =~ m{^(.*)/(\d+)$};
				my $pos = [ RelayTest::lsn_num($l), $s ];
				my $prev = $order{ $m->{key} // '' };
				$problem->('out of order', "$where: message $id after $prev->[2]")
				  if $prev && ($pos->[0] < $prev->[0] || ($pos->[0] == $prev->[0] && $pos->[1] <= $prev->[1]));
				$order{ $m->{key} // '' } = [ @$pos, $id ];
			}
		}
		if ($KEYED{$table})
		{
			my ($errors) = RelayTest::check_key_order(\@msgs, cp => $cp, aborted => \@aborted);
			$problem->(/^key / ? 'out of order' : 'altered', "$topic: $_") for @$errors;
			# rows an interrupted snapshot sent and that were deleted before the next one
			my $trows = RelayTest::table_rows($node, $table, $KEYED{$table}, dbname => $db);
			my $last = RelayTest::last_by_key(\@msgs);
			my %stale;
			for my $cpa (@aborted)
			{
				$stale{$_} = 1 for grep {
					!exists $trows->{ RelayTest::canonical_key($_) }
					  && $last->{$_} =~ /"lsn":"\Q$cpa\E","snapshot":true\}$/
				} keys %$last;
			}
			note("$topic: " . scalar(keys %stale) . ' rows of an interrupted snapshot deleted before the next one')
			  if %stale;
			my $krows = RelayTest::kafka_rows([ grep { !defined $_->{key} || !$stale{ $_->{key} } } @msgs ]);
			for my $key (sort keys %{ { %$krows, %$trows } })
			{
				next if defined $krows->{$key} && defined $trows->{$key} && $krows->{$key} eq $trows->{$key};
				$problem->('state mismatches', "$topic key $key: Kafka "
					  . ($krows->{$key} // 'nothing') . ', table ' . ($trows->{$key} // 'nothing'));
			}
		}
		elsif ($table ne 'messages')
		{
			# insert only, no key: rows = the snapshot's rows + the inserts
			my $count = $node->safe_psql($db, "SELECT count(*) FROM $table");
			my $k = ($rows // 0) + ($changes // 0);
			$problem->('state mismatches', "$table: $count rows, Kafka has $k (snapshot rows and inserts)")
			  if $count != $k;
		}
	}
	for my $id (sort keys %$ev)
	{
		$problem->('lost', "event $id ($ev->{$id}[0]) is not in Kafka") unless $seen{$id};
	}

	# the transactions topic: one begin and one end record per transaction with events
	my $ttopic = "$prefix.transactions";
	if ($a{mock})
	{
		note('mock: transaction records not checked (the mock shows aborted ones)');
	}
	elsif (!grep { $_ eq $ttopic } @topics)
	{
		if ($a{txn_records})
		{
			$problem->('partial transactions', "no topic $ttopic");
		}
		else
		{
			note("no topic $ttopic (this relay writes no transaction records): not checked");
		}
	}
	else
	{
		my (%begin, %end);
		for my $m (RelayTest::consume($a{bootstrap}, $ttopic, isolation => 'read_committed'))
		{
			my $where = "$ttopic [$m->{partition}] offset $m->{offset}";
			$problem->('rolled back', "$where holds " . MARKER) if index($m->{value} // '', MARKER) >= 0;
			my $v = eval { $json->decode($m->{value} // '') };
			my $op = ref $v ? $v->{op} // '' : '';
			if ($op ne 'begin' && $op ne 'commit')
			{
				$problem->('altered', "$where: not a transaction record: " . ($m->{value} // 'null'));
				next;
			}
			my $clsn = $v->{commit_lsn} // '';
			if (!$tx->{$clsn})
			{
				$problem->('rolled back', "$where: $op record of $clsn, no committed transaction with events");
				next;
			}
			$problem->('altered', "$where: key " . ($m->{key} // 'null') . ", xid $tx->{$clsn}{xid}")
			  if ($m->{key} // '') ne $tx->{$clsn}{xid} || ($v->{xid} // '') ne $tx->{$clsn}{xid};
			if (($op eq 'begin' ? $begin{$clsn} : $end{$clsn}))
			{
				$problem->('duplicated', "$where: $op record of $clsn again");
				next;
			}
			$op eq 'begin' ? ($begin{$clsn} = 1) : ($end{$clsn} = $v);
		}
		for my $clsn (sort keys %$tx)
		{
			my $t = $tx->{$clsn};
			my $e = $end{$clsn};
			my $k = $ktx{$clsn} // {};
			my $kev = ($k->{messages} // 0);
			$kev += $_ for values %{ $k->{tables} // {} };
			my $why =
			    !$begin{$clsn} ? 'no begin record'
			  : !$e ? 'no end record'
			  : ($e->{events} // -1) != $t->{events} ? 'end record: ' . ($e->{events} // 'no') . " events, the transaction has $t->{events}"
			  : ($e->{messages} // -1) != $t->{messages} ? "end record: $e->{messages} messages, the transaction has $t->{messages}"
			  : $json->encode($e->{tables} // {}) ne $json->encode($t->{tables}) ? 'end record tables '
			  . $json->encode($e->{tables}) . ', the transaction has ' . $json->encode($t->{tables})
			  : $kev != $e->{events} ? "end record: $e->{events} events, Kafka has $kev"
			  : $json->encode($k->{tables} // {}) ne $json->encode($e->{tables}) ? 'end record tables '
			  . $json->encode($e->{tables}) . ', Kafka has ' . $json->encode($k->{tables} // {})
			  : '';
			$problem->('partial transactions', "transaction $clsn (xid $t->{xid}): $why") if $why;
		}
	}
	return \%n;
}

# ---------------------------------------------------------------------------
# The run

=pod

=item Chaos::summary_line(\%totals)

The one line: "chaos: seed S, rounds R, faults F (kind n, ...), events checked E, lost 0,
duplicated 0, out of order 0, partial transactions 0, rolled back 0, altered 0, state
mismatches 0, stalls 0, relay exits 0".

=item Chaos::failures($line)

The counters of a summary line that are not 0, as "name n" strings (empty: success).

=cut

sub summary_line
{
	my ($t) = @_;
	my $f = 0;
	$f += $_ for values %{ $t->{faults} };
	return sprintf('chaos: seed %s, rounds %d, faults %d (%s), events checked %d, %s', $t->{seed}, $t->{rounds}, $f,
		join(', ', map { "$_ $t->{faults}{$_}" } sort keys %{ $t->{faults} }),
		$t->{events}, join(', ', map { "$_ $t->{n}{$_}" } @COUNTERS));
}

sub failures
{
	my ($line) = @_;
	my @bad;
	for my $name (@COUNTERS)
	{
		my ($v) = $line =~ /\Q$name\E (\d+)/;
		push @bad, "$name " . ($v // 'missing') if !defined $v || $v != 0;
	}
	return @bad;
}

sub add_counts
{
	my ($t, $n) = @_;
	$t->{n}{$_} += $n->{$_} // 0 for @COUNTERS;
	$t->{events} += $n->{events} // 0;
}

=pod

=item Chaos::run(%opt)

The whole chaos test; returns {line => summary_line, totals, eo => 1 when exactly-once
was tested, node, kafka, c => the real phase's context (for the self-check)}.  %opt:
rounds (real-Kafka fault rounds, default 24), seed (default from the time), mock_rounds
(default 4), docs (rows of doc, default 30000), rate (the mixed writers' transactions per
second, default 25), bulk_rate (large transactions per second, default 0.05), bulk_rows
(default 1500), txn_max (--txn-max-messages, default 1000), split_rows (the transaction of
relay-kill-split, default 20000), kinds => [fault kinds] (default:
all of them under exactly-once; without it only the Kafka faults, since relay kills and
PostgreSQL restarts make at-least-once copies), keep => 1 (leave Kafka and PostgreSQL
running for the caller).

=cut

sub run
{
	my (%o) = @_;
	my $t0 = time();
	my $seed = $o{seed} // ((time() ^ $$) % 1000000);
	diag("chaos: seed $seed (CHAOS_SEED=$seed repeats the same choices)");
	my $eo = relay_supports_eo();
	diag($eo
		? 'chaos: the relay runs with --delivery exactly-once'
		: 'chaos: this relay has no --delivery: at-least-once, duplicates allowed (by default no relay kills or PostgreSQL restarts)');
	my %totals = (seed => $seed, rounds => 0, faults => {}, events => 0, n => {});

	my $node = RelayTest::logical_node('chaos', 'max_connections = 40', 'log_min_messages = warning');
	my $k = KafkaCluster->start(nodes => 3);
	my $c = {
		node => $node, db => 'postgres', kafka => $k, bootstrap => $k->{bootstrap}, nodes => 3,
		prefix => 'chaos', slot => 'cdc_relay', seed => $seed, rng => rng($seed), eo => $eo,
		docs => $o{docs} // 30000, rate => $o{rate} // 25, bulk_rate => $o{bulk_rate} // 0.05,
		bulk_rows => $o{bulk_rows} // 1500, txn_max => $o{txn_max} // 1000, split_rows => $o{split_rows} // 20000,
		cps => [], faults => {},
		stalls => 0, exits => 0, writer_errors => 0,
		extra_args => [ '--topic-partitions', '3', '--topic-replication-factor', '3',
			'--topic-config', 'min.insync.replicas=2' ],
		kinds => $o{kinds}
		  // [ 'kafka-kill', 'kafka-pause', ($eo ? ('relay-kill', 'relay-kill-split', 'pg-fast', 'pg-immediate') : ()) ] };
	$node->safe_psql('postgres', PostgreSQL::Test::Utils::slurp_file("$here/schema.sql"),
		extra_params => [ '-v', "docs=$c->{docs}", '-v', 'ON_ERROR_STOP=1' ]);
	$node->safe_psql('postgres', q{SELECT pg_create_logical_replication_slot('audit', 'cdc_relay')});
	start_writers($c);

	# the snapshot, under load; with relay kills among the faults, one in the middle of it
	if (grep { $_ eq 'relay-kill' } @{ $c->{kinds} })
	{
		start_relay_c($c, '-X', 'batch.num.messages=1', '-X', 'queue.buffering.max.messages=1000');
		my $sent = 0;
		RelayTest::wait_until(
			sub {
				my $o = $k->end_offsets("$c->{prefix}.public.doc");
				$sent = 0;
				$sent += $_ for values %$o;
				$sent >= 3 * $c->{txn_max} || !$c->{relay}->alive;
			},
			'snapshot rows in Kafka', STALL_SECONDS);
		my $during = $c->{relay}->log_content !~ /snapshot complete/;
		$c->{relay}->kill('KILL');
		$c->{relay}->finish;
		$c->{faults}{ $during ? 'snapshot-kill' : 'relay-kill' }++;
		note("killed the first relay " . ($during ? "during its snapshot ($sent records in the doc topic)" : 'after its snapshot'));
		note_cp($c);
	}
	start_relay_c($c);
	ok(relay_streams($c), 'chaos: the relay took its snapshot and streams') or BAIL_OUT('relay does not stream');
	my @cps = @{ $c->{cps} };
	note("consistent points: @cps");

	my @plan = schedule($c, $o{rounds} // 24);
	my $r = 0;
	for my $kind (@plan)
	{
		$r++;
		sleep(between($c, 2, 6));
		check_relay($c, "round $r");
		my $t = time();
		fault($c, $kind);
		my $ok = recovered($c, "round $r ($kind)");
		note(sprintf('round %d: %s, recovered %s in %.0f s (%.0f s into the run)', $r, $kind, $ok ? 'yes' : 'NO',
			time() - $t, time() - $t0));
		$totals{rounds}++;
	}
	sleep(between($c, 2, 5));
	stop_writers($c);
	my $end = insert_lsn($c);
	ok(RelayTest::wait_for_confirmed($node, $c->{slot}, $end, STALL_SECONDS), "chaos: the relay confirms the end ($end)")
	  or $c->{stalls}++;
	check_relay($c, 'end');
	is($c->{relay}->stop, 0, 'chaos: the relay exits 0 on SIGTERM');
	is($c->{writer_errors}, 0, 'chaos: the writers had no errors but lost connections');
	is(scalar(@{ $c->{cps} }), ($c->{faults}{'snapshot-kill'} ? 2 : 1), 'chaos: no snapshot but the first (and the one after a kill during it)');

	my $n = check(node => $node, db => 'postgres', audit => 'audit', bootstrap => $c->{bootstrap},
		prefix => $c->{prefix}, cps => $c->{cps}, txn_records => $eo, copies_allowed => !$eo, txn_max => $c->{txn_max});
	$n->{stalls} = $c->{stalls};
	$n->{'relay exits'} = $c->{exits};
	note(sprintf('real Kafka: %d events (%d transactions, %d of them larger than --txn-max-messages), %d copies; %s; '
		  . 'relay-kill-split kills in the middle of the transaction %d; %s (%.0f s)', $n->{events}, $n->{txns},
		$n->{large}, $n->{copies}, relay_log_stats($c), $c->{split_kills}{middle} // 0,
		join(', ', map { "$_ $n->{$_}" } @COUNTERS), time() - $t0));
	add_counts(\%totals, $n);
	$totals{faults}{$_} += $c->{faults}{$_} for keys %{ $c->{faults} };

	my $m = mock_phase($node, $seed, $o{mock_rounds} // 4, $eo);
	add_counts(\%totals, $m->{n});
	$totals{rounds} += $m->{rounds};
	$totals{faults}{$_} += $m->{faults}{$_} for keys %{ $m->{faults} };

	my $line = summary_line(\%totals);
	diag($line);
	diag(sprintf('chaos: %.0f s', time() - $t0));
	if (!$o{keep})
	{
		$k->stop;
		$node->stop;
	}
	return { line => $line, totals => \%totals, eo => $eo, node => $node, kafka => $k, c => $c };
}

# mock_phase($node, $seed, $rounds, $eo): the relay of database mockdb into the test
# broker, with Produce (and, with exactly-once, EndTxn) errors injected; returns {n =>
# counters, rounds, faults}
sub mock_phase
{
	my ($node, $seed, $rounds, $eo) = @_;
	my $t0 = time();
	$node->safe_psql('postgres', 'CREATE DATABASE mockdb');
	my $broker = RelayTest::start_broker(partitions => 3);
	my $c = {
		node => $node, db => 'mockdb', bootstrap => $broker->{bootstrap}, prefix => 'mock', slot => 'mock_slot',
		seed => $seed + 1, rng => rng($seed + 1), eo => $eo, docs => 2000, rate => 20, bulk_rate => 0,
		bulk_rows => 0, txn_max => 1000, cps => [], faults => {}, stalls => 0, exits => 0, writer_errors => 0,
		exits_expected => 1 };
	$node->safe_psql('mockdb', PostgreSQL::Test::Utils::slurp_file("$here/schema.sql"),
		extra_params => [ '-v', "docs=$c->{docs}", '-v', 'ON_ERROR_STOP=1' ]);
	$node->safe_psql('mockdb', q{SELECT pg_create_logical_replication_slot('mock_audit', 'cdc_relay')});
	start_writers($c);
	start_relay_c($c);
	ok(relay_streams($c), 'mock: the relay streams into the test broker') or return { n => { stalls => 1 }, rounds => 0, faults => {} };

	# errors the producer retries, errors that abort the Kafka transaction (exactly-once:
	# the relay re-sends from its checkpoint) and one that is fatal for the producer (the
	# relay exits 1 and is started again); a seeded shuffle of them, then random ones
	my @errors = (map({ "produce $_" } 'NOT_LEADER_FOR_PARTITION 3', 'NOT_ENOUGH_REPLICAS 5', 'REQUEST_TIMED_OUT 2'),
		($eo ? ('produce OUT_OF_ORDER_SEQUENCE_NUMBER 1',
				map { "endtxn $_" } 'NOT_COORDINATOR 2', 'COORDINATOR_NOT_AVAILABLE 2', 'CONCURRENT_TRANSACTIONS 3',
				'UNKNOWN_PRODUCER_ID 1', 'INVALID_TXN_STATE 1') : ()));
	$c->{kinds} = \@errors;
	my @plan = schedule($c, $rounds);
	for my $r (1 .. $rounds)
	{
		my $error = $plan[ $r - 1 ];
		sleep(between($c, 1, 4));
		my ($kind) = split / /, $error;
		my $reply = $broker->command("error $error");
		note("mock round $r: error $error -> $reply");
		$c->{faults}{"mock-$kind"}++;
		sleep(between($c, 1, 3));
		recovered($c, "mock round $r");    # restarts the relay if it exited
	}
	stop_writers($c);
	my $end = insert_lsn($c);
	ok(RelayTest::wait_for_confirmed($node, $c->{slot}, $end, STALL_SECONDS), "mock: the relay confirms the end ($end)")
	  or $c->{stalls}++;
	is($c->{relay}->stop, 0, 'mock: the relay exits 0 on SIGTERM');
	my $n = check(node => $node, db => 'mockdb', audit => 'mock_audit', bootstrap => $c->{bootstrap}, prefix => 'mock',
		cps => $c->{cps}, mock => 1);
	$n->{stalls} = $c->{stalls};
	$n->{'relay exits'} = 0;    # exits after injected errors are an allowed reaction
	note(sprintf('mock: %d events, %d copies (aborted transactions are visible on the mock), %d relay restarts after '
		  . 'it exited; %s; %s (%.0f s)',
		$n->{events}, $n->{copies}, $c->{exits}, relay_log_stats($c), join(', ', map { "$_ $n->{$_}" } @COUNTERS),
		time() - $t0));
	$broker->stop;
	return { n => $n, rounds => $rounds, faults => $c->{faults} };
}

1;
