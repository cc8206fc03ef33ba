# test/tap/RelayTest.pm: helpers for the TAP tests of the relay daemon
# (`cdc-relay run`) against the Kafka-protocol test broker (`cdc-relay broker`),
# read back with kcat, a Kafka client nobody here wrote.
#
#   use RelayTest;
#   my $broker = start_broker();                       # or start_broker(partitions => 8)
#   my $relay  = start_relay($node, $broker, '--snapshot-jobs', 3);
#   $relay->wait_for_log(qr/streaming from slot/) or BAIL_OUT('relay did not start');
#   ...
#   is($relay->stop, 0, 'relay exits 0 on SIGTERM');
#   my @msgs = consume($broker->{bootstrap}, 'cdc.public.t');
#   my $last = last_by_key(\@msgs);                    # key => value, deleted keys absent
#
# Every process started through this module (broker, relays, start_process)
# is killed with SIGKILL in an END block, also when a check failed or the
# script died, so that no relay or broker outlives its test.
#
# The relay binary is $ENV{CDC_RELAY_BIN}, or `cdc-relay` from PATH (the TAP
# runner puts `pg_config --bindir`, where `make install` puts it, first).
package RelayTest;

use strict;
use warnings;

use Exporter 'import';
use IPC::Run;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use Test::More;
use PostgreSQL::Test::Utils;
use PostgreSQL::Test::Cluster;

our @EXPORT = qw(
  logical_node relay_bin start_broker start_relay run_relay start_process
  consume last_by_key topics wait_until confirmed_flush shop_tables shop_writers
  lsn_num lsn_cmp wait_for_confirmed
  check_key_order table_rows kafka_rows compare_rows slot_changes check_delivered
  consume_tables is_delivered
  scan_topic slot_events check_exactly_once check_transactions
);

# Everything still to kill at exit: RelayTest::Process objects and broker
# harnesses.
my @to_kill;
my $counter = 0;

=pod

=item relay_bin()

The relay binary the helpers run: $ENV{CDC_RELAY_BIN} or "cdc-relay".

=cut

# logical_node($name, @conf_lines): a started PostgreSQL::Test::Cluster with
# wal_level=logical, cdc_relay allowed as an output plugin, plus the given
# postgresql.conf lines.
sub logical_node
{
	my ($name, @conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => 'logical');
	$node->append_conf('postgresql.conf',
		join("\n", "output_plugin_libraries = 'pgoutput, test_decoding, cdc_relay'", @conf) . "\n");
	$node->start;
	return $node;
}

sub relay_bin
{
	return $ENV{CDC_RELAY_BIN} || 'cdc-relay';
}

sub _log_path
{
	my ($name) = @_;
	$counter++;
	return "$PostgreSQL::Test::Utils::log_path/${name}_$counter.log";
}

sub _timeout
{
	return $PostgreSQL::Test::Utils::timeout_default;
}

=pod

=item insert_lsn($node [, $db]), wal_grew($node, $from, $bytes [, $db])

Not exported (tests often have their own one-argument versions): the
server's WAL insert position; whether it wrote more than $bytes of WAL since
$from.

=cut

sub insert_lsn
{
	my ($node, $db) = @_;
	return $node->safe_psql($db // 'postgres', 'SELECT pg_current_wal_insert_lsn()');
}

sub wal_grew
{
	my ($node, $from, $bytes, $db) = @_;
	return $node->safe_psql($db // 'postgres', "SELECT pg_current_wal_insert_lsn() - '$from' > $bytes") eq 't';
}

=pod

=item lsn_num($lsn)

A WAL position "X/Y" as a number (hi * 2**32 + lo); undef when $lsn is not
one.  Perl numbers hold 53-bit integers exactly, plenty for test clusters.

=item lsn_cmp($a, $b)

<=> on two "X/Y" positions.

=cut

sub lsn_num
{
	my ($lsn) = @_;
	return undef unless defined $lsn && $lsn =~ m{^([0-9A-Fa-f]+)/([0-9A-Fa-f]+)$};
	return hex($1) * 2**32 + hex($2);
}

sub lsn_cmp
{
	my ($a, $b) = @_;
	return lsn_num($a) <=> lsn_num($b);
}

=pod

=item wait_until($code, $what [, $timeout])

Calls $code every 0.1 s until it returns true, at most $timeout seconds
(default $PostgreSQL::Test::Utils::timeout_default).  Returns 1 when it did,
else 0 after a diag "timed out waiting for $what".

=cut

sub wait_until
{
	my ($code, $what, $timeout) = @_;
	my $deadline = time() + ($timeout // _timeout());
	while (1)
	{
		return 1 if $code->();
		if (time() > $deadline)
		{
			diag("timed out waiting for $what");
			return 0;
		}
		sleep(0.1);
	}
}

=pod

=item confirmed_flush($node, $slot [, $dbname])

The slot's confirmed_flush_lsn as "X/Y", '' when it is NULL, undef when the
slot does not exist.

=item wait_for_confirmed($node, $slot, $lsn [, $timeout])

Waits until the slot's confirmed_flush_lsn >= $lsn (a condition polled with
wait_until; the relay must run with a short --status-interval).  Returns 1
when reached, else 0 (with a diag naming both positions).

=cut

sub confirmed_flush
{
	my ($node, $slot, $dbname) = @_;
	my $r = $node->safe_psql($dbname // 'postgres',
		"SELECT coalesce(confirmed_flush_lsn::text, '') FROM pg_replication_slots WHERE slot_name = '$slot'");
	return undef if $r eq '' && !_slot_exists($node, $slot, $dbname);
	return $r;
}

sub _slot_exists
{
	my ($node, $slot, $dbname) = @_;
	return $node->safe_psql($dbname // 'postgres',
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$slot'") == 1;
}

sub wait_for_confirmed
{
	my ($node, $slot, $lsn, $timeout) = @_;
	my $last = '';
	my $ok = wait_until(
		sub {
			$last = confirmed_flush($node, $slot) // '(no slot)';
			return lsn_num($last) && lsn_num($last) >= lsn_num($lsn);
		},
		"confirmed_flush_lsn of slot $slot >= $lsn",
		$timeout);
	diag("confirmed_flush_lsn of $slot is $last, wanted $lsn") unless $ok;
	return $ok;
}

# ---------------------------------------------------------------------------
# A small shop schema and a pgbench workload on it (the real-Kafka tests).

=pod

=item shop_tables($node, $db, accounts => A, orders => O, moves => M)

Creates and seeds the tables shop_writers() writes: accounts (id primary key;
A rows), lines ((order_id, line_no) primary key; O orders x 4 lines) and moves
(id primary key, default nextval('moves_id_seq') from 1,000,000; M rows); then
ANALYZE.

=item shop_writers($node, $db, accounts => A, orders => O, moves => M, pgbench => [...])

Starts two pgbench clients (start_process, named writers_$db; --max-tries 20, so
that a deadlock between them is retried: a rolled-back try emits nothing) on
$db, each transaction touching the three tables: an upsert of a random account
(ids up to 1.2 A, so inserts too) and in 3 of 10 a delete of another; an upsert
of a random line (6 in 10), a delete of one (2 in 10) or a primary-key change
(line_no + 10, only when that key is free, so that concurrent clients never
collide); a moves row's key changed to nextval (4 in 10), one deleted (2 in 10)
or a new one.  The sizes are those given to shop_tables; pgbench => [...] adds
options (-T 900 -R 300, -t 1000, ...).  Returns the RelayTest::Process.

=cut

sub shop_tables
{
	my ($node, $db, %n) = @_;
	$node->safe_psql($db, qq{
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, note text);
INSERT INTO accounts SELECT g, g * 10, 'seed ' || g FROM generate_series(1, $n{accounts}) g;
CREATE TABLE lines (order_id int, line_no int, qty int NOT NULL, sku text,
                    PRIMARY KEY (order_id, line_no));
INSERT INTO lines SELECT o, l, l, 'sku-' || o || '-' || l
  FROM generate_series(1, $n{orders}) o, generate_series(1, 4) l;
CREATE TABLE moves (id int PRIMARY KEY, v text NOT NULL);
CREATE SEQUENCE moves_id_seq START 1000000 OWNED BY moves.id;
ALTER TABLE moves ALTER COLUMN id SET DEFAULT nextval('moves_id_seq');
INSERT INTO moves SELECT g, 'seed ' || g FROM generate_series(1, $n{moves}) g;
ANALYZE;
});
}

sub shop_writers
{
	my ($node, $db, %opt) = @_;
	my ($amax, $omax, $rmax) = (int($opt{accounts} * 1.2), int($opt{orders} * 1.2), $opt{moves} + 100);
	my $script = qq{
\\set a random(1, $amax)
\\set b random(1, $amax)
\\set o random(1, $omax)
\\set l random(1, 4)
\\set r random(1, $rmax)
\\set op random(1, 10)
BEGIN;
INSERT INTO accounts VALUES (:a, :op, 'w') ON CONFLICT (id) DO UPDATE SET balance = accounts.balance + excluded.balance, note = 'u' || excluded.balance;
\\if :op <= 3
DELETE FROM accounts WHERE id = :b;
\\endif
\\if :op <= 6
INSERT INTO lines VALUES (:o, :l, 1, 'w') ON CONFLICT (order_id, line_no) DO UPDATE SET qty = lines.qty + 1;
\\elif :op <= 8
DELETE FROM lines WHERE order_id = :o AND line_no = :l;
\\else
UPDATE lines SET line_no = line_no + 10 WHERE order_id = :o AND line_no = :l AND NOT EXISTS (SELECT 1 FROM lines x WHERE x.order_id = :o AND x.line_no = :l + 10);
\\endif
\\if :op <= 4
UPDATE moves SET id = nextval('moves_id_seq'), v = left(v, 30) || '>' WHERE id = (SELECT id FROM moves WHERE id >= :r ORDER BY id LIMIT 1);
\\elif :op <= 6
DELETE FROM moves WHERE id = (SELECT id FROM moves WHERE id >= :r ORDER BY id LIMIT 1);
\\else
INSERT INTO moves (v) VALUES ('new ' || :client_id);
\\endif
COMMIT;
};
	my $file = PostgreSQL::Test::Utils::tempdir() . "/shop_writer_$db.sql";
	PostgreSQL::Test::Utils::append_to_file($file, $script);
	return start_process(
		[ 'pgbench', '-n', '-c', '2', '-j', '2', '--max-tries', '20', @{ $opt{pgbench} // [] },
		  '-f', $file, $node->connstr($db) ],
		name => "writers_$db");
}

# ---------------------------------------------------------------------------
# Background processes (relay, writers): fork + exec, our own waitpid.

package RelayTest::Process;

use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use Test::More;

=pod

=item RelayTest::start_process(\@cmd, name => NAME [, stdin => FILE])

Starts @cmd in the background in a process group of its own, stdout and stderr appended to
tmp_check/log/NAME_<n>.log (stdin from /dev/null or FILE).  Returns a
RelayTest::Process: {pid, log, cmd}, with the methods below.  It is killed
(SIGKILL) at exit if still running.

=item $p->alive

True while the process runs (not yet exited).

=item $p->log_content

The log file's content so far.

=item $p->wait_for_log(qr/.../ [, $timeout])

Polls the log until it matches; 1 if it did, 0 on timeout or when the process
exited without the line (a diag shows the log's tail).

=item $p->kill($sig)

Sends $sig ('TERM', 'KILL', 9, ...) to the process and its process group
(children of a shell writer too).

=item $p->finish([$timeout])

Waits for the process to exit (SIGKILL after $timeout, default
timeout_default) and returns its exit status: the exit code, 128 + N when
killed by signal N, undef when it had to be killed.  Idempotent.

=item $p->stop([$timeout])

kill('TERM') then finish.

=cut

sub new
{
	my ($class, $cmd, %opt) = @_;
	my $log = RelayTest::_log_path($opt{name} // 'process');
	my $stdin = $opt{stdin} // '/dev/null';
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		POSIX::setpgid(0, 0);
		open(STDIN, '<', $stdin) or POSIX::_exit(127);
		open(STDOUT, '>>', $log) or POSIX::_exit(127);
		open(STDERR, '>&', \*STDOUT) or POSIX::_exit(127);
		exec(@$cmd) or do { print STDERR "exec $cmd->[0]: $!\n"; POSIX::_exit(127); };
	}
	POSIX::setpgid($pid, $pid);    # also here: no window where kill(-pid) misses
	my $self = bless { pid => $pid, log => $log, cmd => [@$cmd], status => undef }, $class;
	push @to_kill, $self;
	Test::More::note("started pid $pid: @$cmd (log $log)");
	return $self;
}

sub _reap
{
	my ($self) = @_;
	return 1 if defined $self->{raw};
	my $r = waitpid($self->{pid}, WNOHANG);
	if ($r == $self->{pid})
	{
		$self->{raw} = $?;
		my $sig = $? & 127;
		$self->{status} = $sig ? 128 + $sig : $? >> 8;
		return 1;
	}
	return 0;
}

sub alive
{
	my ($self) = @_;
	return !$self->_reap;
}

sub log_content
{
	my ($self) = @_;
	open(my $fh, '<', $self->{log}) or return '';
	local $/;
	my $c = <$fh>;
	close $fh;
	return $c // '';
}

sub _log_tail
{
	my ($self, $n) = @_;
	my @l = split /\n/, $self->log_content;
	@l = @l[ -$n .. -1 ] if @l > $n;
	return join("\n", @l);
}

sub wait_for_log
{
	my ($self, $re, $timeout) = @_;
	my $deadline = time() + ($timeout // RelayTest::_timeout());
	while (1)
	{
		return 1 if $self->log_content =~ $re;
		if (!$self->alive)
		{
			return 1 if $self->log_content =~ $re;
			diag("pid $self->{pid} exited (status $self->{status}) without logging $re; log tail:\n"
				  . $self->_log_tail(30));
			return 0;
		}
		if (time() > $deadline)
		{
			diag("timed out waiting for $re in $self->{log}; log tail:\n" . $self->_log_tail(30));
			return 0;
		}
		sleep(0.1);
	}
}

sub kill
{
	my ($self, $sig) = @_;
	return 0 unless $self->alive;
	return CORE::kill($sig, -$self->{pid});
}

sub finish
{
	my ($self, $timeout) = @_;
	my $deadline = time() + ($timeout // RelayTest::_timeout());
	while (!$self->_reap)
	{
		if (time() > $deadline)
		{
			diag("pid $self->{pid} (@{$self->{cmd}}) did not exit in time: killing it");
			CORE::kill('KILL', -$self->{pid});
			waitpid($self->{pid}, 0);
			$self->{raw} = $?;
			$self->{status} = undef;
			return undef;
		}
		sleep(0.05);
	}
	return $self->{status};
}

sub stop
{
	my ($self, $timeout) = @_;
	$self->kill('TERM');
	return $self->finish($timeout);
}

sub _kill_at_exit
{
	my ($self) = @_;
	return if defined $self->{raw};
	CORE::kill('KILL', -$self->{pid});    # the process group: writers' children too
	waitpid($self->{pid}, 0) unless $self->_reap;
}

package RelayTest;

sub start_process
{
	my ($cmd, %opt) = @_;
	return RelayTest::Process->new($cmd, %opt);
}

# ---------------------------------------------------------------------------
# The test broker.

package RelayTest::Broker;

use Test::More;
use Time::HiRes qw(time);

=pod

=item RelayTest::start_broker(%opt)

Runs `cdc-relay broker` (options: brokers => N, partitions => N,
topics => [NAME, ...], args => [more arguments]) through IPC::Run with a
stdin pipe kept open (so that control commands can be sent; EOF would not
stop it anyway), stderr to tmp_check/log/broker_<n>.log.  Returns a
RelayTest::Broker: {bootstrap => "host:port,...", log => PATH}.  Killed at
exit if still running.

=item $broker->command($line [, $timeout])

Writes one control line ("down 1", "rtt 1 50", "create t 8", ...) and waits
for its one-line reply, which it returns (without the newline); dies when no
reply comes.

=item $broker->stop

SIGTERM, waits; returns the exit status (0 expected).

=cut

sub new
{
	my ($class, %opt) = @_;
	my @cmd = (RelayTest::relay_bin(), 'broker');
	push @cmd, '--brokers', $opt{brokers} if $opt{brokers};
	push @cmd, '--partitions', $opt{partitions} if $opt{partitions};
	push @cmd, map { ('--topic', $_) } @{ $opt{topics} // [] };
	push @cmd, @{ $opt{args} // [] };
	my $self = bless { in => '', out => '', log => RelayTest::_log_path('broker'), seen => 0 }, $class;
	$self->{timer} = IPC::Run::timeout(RelayTest::_timeout(), name => 'cdc-relay broker');
	$self->{h} = IPC::Run::start(\@cmd, '<', \$self->{in}, '>', \$self->{out},
		'2>', $self->{log}, $self->{timer});
	push @to_kill, $self;
	$self->{timer}->start;
	$self->{h}->pump until $self->{out} =~ /\n/ || !$self->{h}->pumpable;
	$self->{timer}->reset;
	die "cdc-relay broker did not print its bootstrap list (log $self->{log})"
	  unless $self->{out} =~ /^([^\n]+)\n/;
	$self->{bootstrap} = $1;
	$self->{seen} = length($1) + 1;
	Test::More::note("broker at $self->{bootstrap}");
	return $self;
}

sub command
{
	my ($self, $line, $timeout) = @_;
	$self->{in} .= "$line\n";
	$self->{timer}->start($timeout // RelayTest::_timeout());
	while (1)
	{
		my $rest = substr($self->{out}, $self->{seen});
		if ($rest =~ /^([^\n]*)\n/)
		{
			$self->{seen} += length($1) + 1;
			$self->{timer}->reset;
			Test::More::note("broker: $line -> $1");
			return $1;
		}
		die "broker exited before answering \"$line\"" unless $self->{h}->pumpable;
		$self->{h}->pump;
	}
}

sub stop
{
	my ($self) = @_;
	return $self->{status} if $self->{stopped};
	$self->{stopped} = 1;
	$self->{timer}->reset;
	$self->{h}->signal('TERM');
	eval { $self->{h}->finish; };
	$self->{status} = $self->{h}->full_result(0);
	$self->{status} = $self->{status} & 127 ? 128 + ($self->{status} & 127) : $self->{status} >> 8;
	return $self->{status};
}

sub _kill_at_exit
{
	my ($self) = @_;
	return if $self->{stopped};
	$self->{stopped} = 1;
	eval { $self->{h}->kill_kill(grace => 1); };
}

package RelayTest;

sub start_broker
{
	return RelayTest::Broker->new(@_);
}

# ---------------------------------------------------------------------------
# The relay.

=pod

=item start_relay($node_or_conninfo, $broker_or_bootstrap, [\%opt,] @extra)

Starts `cdc-relay run -d CONNINFO -b BOOTSTRAP --status-interval 0.5
--topic-prefix cdc @extra` in the background (stdout and stderr to tmp_check/log/relay_<n>.log).
CONNINFO is $node->connstr('postgres') (or $opt{dbname}'s) for a
PostgreSQL::Test::Cluster, else the string given.  %opt: bin => binary (default
relay_bin()), dbname => database, name => log file name.  Returns a
RelayTest::Process (pid, log, wait_for_log, kill, finish, stop, alive).

=item run_relay($node_or_conninfo, $broker_or_bootstrap, [\%opt,] @extra)

The same in the foreground, for runs that end by themselves (--endpos,
--snapshot initial-only, bad usage): waits at most $opt{timeout} (default
timeout_default) seconds, then kills it.  Returns ($exit_status, $stdout,
$stderr); $exit_status is undef when it had to be killed.  stderr is also
written to tmp_check/log/relay_<n>.log.  With $broker undef, no -b is given
and with $node undef no -d (for usage tests); %opt nodefaults => 1 drops
--status-interval too, and exact => 1 runs the binary with @extra only (no
"run", no options added).

--topic-prefix is mandatory for the relay; both add `--topic-prefix cdc`
(so tests keep their cdc.* topic names) unless @extra already holds
--topic-prefix (or --topic-prefix=NAME), also with nodefaults.  A
topic-prefix line of a config file (-c) is thus overridden: test that with
exact => 1.

=cut

sub _relay_cmd
{
	my ($node, $broker, @extra) = @_;
	my %opt = (ref($extra[0]) eq 'HASH') ? %{ shift @extra } : ();
	my @cmd = ($opt{bin} // relay_bin());
	return (\%opt, @cmd, @extra) if $opt{exact};
	push @cmd, 'run';
	if (defined $node)
	{
		my $conn = ref($node) ? $node->connstr($opt{dbname} // 'postgres') : $node;
		push @cmd, '-d', $conn;
	}
	push @cmd, '-b', (ref($broker) ? $broker->{bootstrap} : $broker) if defined $broker;
	push @cmd, '--status-interval', '0.5' unless $opt{nodefaults};
	push @cmd, '--topic-prefix', 'cdc' unless grep { /^--topic-prefix(=|$)/ } @extra;
	# CDC_RELAY_TEST_ARGS: options for every relay a test starts (before the test's own,
	# which win), e.g. '--delivery exactly-once' to run a suite in the other mode
	push @cmd, split(' ', $ENV{CDC_RELAY_TEST_ARGS}) if $ENV{CDC_RELAY_TEST_ARGS} && !$opt{nodefaults};
	push @cmd, @extra;
	return (\%opt, @cmd);
}

sub start_relay
{
	my ($opt, @cmd) = _relay_cmd(@_);
	return RelayTest::Process->new(\@cmd, name => $opt->{name} // 'relay');
}

sub run_relay
{
	my ($opt, @cmd) = _relay_cmd(@_);
	my ($out, $err) = ('', '');
	my $log = _log_path($opt->{name} // 'relay');
	my $h = IPC::Run::start(\@cmd, '<', \undef, '>', \$out, '2>', \$err);
	my $deadline = time() + ($opt->{timeout} // _timeout());
	my $status;
	while (1)
	{
		$h->pump_nb;
		if (!$h->pumpable)
		{
			$h->finish;
			my $raw = $h->full_result(0);
			$status = $raw & 127 ? 128 + ($raw & 127) : $raw >> 8;
			last;
		}
		if (time() > $deadline)
		{
			diag("@cmd did not exit in time: killing it");
			$h->kill_kill(grace => 1);
			last;
		}
		sleep(0.05);
	}
	if (open(my $fh, '>', $log))
	{
		print $fh "# @cmd\n# exit status " . ($status // 'none (killed)') . "\n$err";
		close $fh;
	}
	return ($status, $out, $err);
}

# ---------------------------------------------------------------------------
# Reading Kafka with kcat.

=pod

=item consume($bootstrap, $topic [, %opt])

Reads the whole topic once with kcat (-C -o beginning -e) and returns the
messages sorted by partition and offset, each {topic, partition, offset,
timestamp (ms since the epoch, the producer's), key, value, headers => {name
=> value}}; a null key or value (tombstone) is undef.  kcat prints each
message as
  partition \x1e offset \x1e timestamp \x1e keylen \x1e valuelen \x1e key \x1e value \x1e headers \x1f
(-f with %K and %S, the lengths, -1 for null): key and value are cut by
their byte lengths, so they may hold any byte; the separators (raw control
characters, which JSON never contains raw) only end the numeric fields and
the headers.  kcat prints headers as "name=value,name=value": they are split
at each comma followed by "name=", so a header value must not itself hold
",x=" (the relay's values are LSNs, ids, op names and SQL-quoted table names).
This avoids a JSON envelope (kcat -J), whose decoding with JSON::PP doubled
the time of large reads.  A topic that does not exist gives an empty list
(and $opt{missing} = \$flag is set to 1): it is looked up with topics()
first, since kcat -C would make the test broker auto-create it.  A kcat
failure dies.  $bootstrap may also be a RelayTest::Broker.  %opt isolation =>
'read_uncommitted' also returns the messages of Kafka transactions that are open or
were aborted; the default is read_committed (always passed to kcat explicitly).
kcat gets -X fetch.wait.max.ms=10: librdkafka 2.0.2 signals the end of a partition
(-e) only on a fetch that returns nothing, and with read_committed under a steady
transactional load each fetch, waiting the default 500 ms, finds a new commit, so kcat
-e would read on for as long as the load lasts.

=cut

sub consume
{
	my ($bootstrap, $topic, %opt) = @_;
	$bootstrap = $bootstrap->{bootstrap} if ref $bootstrap;
	# kcat -C on a missing topic would make the test broker create it
	if (!grep { $_ eq $topic } topics($bootstrap))
	{
		${ $opt{missing} } = 1 if $opt{missing};
		return ();
	}
	my ($out, $err) = ('', '');
	my @cmd = ('kcat', '-b', $bootstrap, '-C', '-t', $topic, '-o', 'beginning', '-e', '-q',
		'-X', 'isolation.level=' . ($opt{isolation} // 'read_committed'), '-X', 'fetch.wait.max.ms=10',
		'-m', '10', '-f', '%p\x1e%o\x1e%T\x1e%K\x1e%S\x1e%k\x1e%s\x1e%h\x1f');
	my $ok = IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(_timeout()));
	die "kcat -C -t $topic failed: $err" unless $ok;
	my @msgs;
	my $pos = 0;
	my $len = length($out);
	while ($pos < $len)
	{
		my @f;
		for (1 .. 5)
		{
			my $e = index($out, "\x1e", $pos);
			die "kcat output of $topic: bad record at byte $pos" if $e < 0;
			push @f, substr($out, $pos, $e - $pos);
			$pos = $e + 1;
		}
		my ($p, $o, $ts, $klen, $vlen) = @f;
		die "kcat output of $topic: bad record at byte $pos: @f"
		  unless "$p$o" =~ /^\d+$/ && $ts =~ /^-?\d+$/ && $klen =~ /^-?\d+$/ && $vlen =~ /^-?\d+$/;
		my $key = $klen >= 0 ? substr($out, $pos, $klen) : undef;
		$pos += ($klen > 0 ? $klen : 0);
		die "kcat output of $topic: no separator after the key at byte $pos"
		  unless substr($out, $pos, 1) eq "\x1e";
		$pos++;
		my $value = $vlen >= 0 ? substr($out, $pos, $vlen) : undef;
		$pos += ($vlen > 0 ? $vlen : 0);
		die "kcat output of $topic: no separator after the value at byte $pos"
		  unless substr($out, $pos, 1) eq "\x1e";
		$pos++;
		my $e = index($out, "\x1f", $pos);
		die "kcat output of $topic: unterminated record at byte $pos" if $e < 0;
		my $hs = substr($out, $pos, $e - $pos);
		$pos = $e + 1;
		my %h;
		for my $pair (split /,(?=[A-Za-z0-9_.-]+=)/, $hs)
		{
			my ($n, $v) = split /=/, $pair, 2;
			$h{$n} = $v;
		}
		push @msgs,
		  {
			topic => $topic,
			partition => $p,
			offset => $o,
			timestamp => $ts,
			key => $key,
			value => $value,
			headers => \%h,
		  };
	}
	return sort { $a->{partition} <=> $b->{partition} || $a->{offset} <=> $b->{offset} } @msgs;
}

=pod

=item last_by_key(\@msgs)

The compacted view of a topic: {key => value} of the last message per key in
@msgs (as consume returns them: per-partition offset order, and a key always
lands in the same partition).  A tombstone (undef value) or a delete event
(header op "d", for --no-tombstones) removes the key.  Messages without a key
(tables without a key) or with a marker key (the JSON strings "truncate" and
"unknown") are ignored.

=cut

sub last_by_key
{
	my ($msgs) = @_;
	my %last;
	for my $m (@$msgs)
	{
		# no key, or a marker key (a JSON string: "truncate", "unknown"), is not a row
		next unless defined $m->{key} && $m->{key} !~ /^"/;
		if (!defined $m->{value} || ($m->{headers}{op} // '') eq 'd')
		{
			delete $last{ $m->{key} };
		}
		else
		{
			$last{ $m->{key} } = $m->{value};
		}
	}
	return \%last;
}

=pod

=item topics($bootstrap)

The names of the topics the cluster has (kcat -L), sorted.

=cut

sub topics
{
	my ($bootstrap) = @_;
	$bootstrap = $bootstrap->{bootstrap} if ref $bootstrap;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'kcat', '-b', $bootstrap, '-L', '-m', '10' ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(_timeout()))
	  or die "kcat -L failed: $err";
	return sort map { /^\s*topic "(.*)" with \d+ partitions/ ? ($1) : () } split /\n/, $out;
}

# ---------------------------------------------------------------------------
# Checking what the relay wrote.

=pod

=item check_key_order(\@msgs [, cp => LSN, aborted => [LSN, ...], tombstones => 0])

Checks the messages of one table topic (as consume returns them) from their
headers and a few fixed bytes of the value (no JSON decoding: fast on large
topics), the relay's format (README "Kafka messages"):
  - a null value is a tombstone: header op=tombstone, a key;
  - any other value starts with {"op":"<header op>";
  - snapshot rows (op r): header snapshot=true, event_id <cp>/r/<oid>/<n>;
  - changes: header snapshot=false, event_id <commit_lsn>/<seq> with the
    header's commit_lsn, the event holds "commit_lsn":"<commit_lsn>","seq":<seq>,
    and commit_lsn >= cp;
  - per key, Kafka order is commit order: snapshot rows first (one per
    snapshot; rows of the aborted snapshots, whose consistent points
    `aborted` lists, before the row of cp), then changes with (commit_lsn,
    seq) increasing; a step back is allowed only for a replay (at least once:
    an event_id already seen for that key);
  - each delete is followed, for its key, by a tombstone (unless tombstones => 0).
Without cp, snapshot rows may name any consistent point.  Messages without a
key get the per-message checks only.  Returns (\@errors, \%stats), stats:
messages, keys, r, changes, deletes, tombstones, replays (messages repeating
an event_id of their key), both (keys with a snapshot row and later changes),
moved (updates filed under another key than the event's "key": primary key
changes).

=cut

# _ts($ms): a Kafka timestamp as HH:MM:SS.mmm (UTC)
sub _ts
{
	my ($ms) = @_;
	my @t = gmtime(int($ms / 1000));
	return sprintf('%02d:%02d:%02d.%03d', @t[ 2, 1, 0 ], $ms % 1000);
}

sub check_key_order
{
	my ($msgs, %opt) = @_;
	my $cp = $opt{cp};
	my @cps = (@{ $opt{aborted} // [] }, defined $cp ? ($cp) : ());
	my %rank;
	@rank{@cps} = (0 .. $#cps);
	my $tombstones = $opt{tombstones} // 1;
	my (@errors, %bykey);
	my %st = map { ($_ => 0) } qw(messages keys r changes deletes tombstones replays both moved);
	for my $m (@$msgs)
	{
		$st{messages}++;
		my $h = $m->{headers};
		my $op = $h->{op} // '';
		my $where = "partition $m->{partition} offset $m->{offset}"
		  . (defined $m->{timestamp} ? ' ' . _ts($m->{timestamp}) : '');
		if (!defined $m->{value})
		{
			$st{tombstones}++;
			push @errors, "$where: null value with header op $op" if $op ne 'tombstone';
			push @errors, "$where: tombstone without a key" unless defined $m->{key};
			push @{ $bykey{ $m->{key} } }, { tomb => 1, where => $where } if defined $m->{key};
			next;
		}
		push @errors, "$where: header op $op, event " . substr($m->{value}, 0, 12)
		  if substr($m->{value}, 0, 9) ne "{\"op\":\"$op\"";
		my $id = $h->{event_id} // '';
		my %e = (where => $where, op => $op, id => $id);
		if ($op eq 'r')
		{
			$st{r}++;
			push @errors, "$where: snapshot row with header snapshot=" . ($h->{snapshot} // 'none')
			  if ($h->{snapshot} // '') ne 'true';
			if ($id =~ m{^([0-9A-F]+/[0-9A-F]+)/r/\d+/\d+$})
			{
				$e{cp} = $1;
				push @errors, "$where: snapshot row $id, expected consistent point @cps"
				  if @cps && !exists $rank{$1};
			}
			else
			{
				push @errors, "$where: snapshot row with event_id '$id'";
			}
		}
		else
		{
			$st{changes}++;
			$st{deletes}++ if $op eq 'd';
			push @errors, "$where: change with header snapshot=" . ($h->{snapshot} // 'none')
			  if ($h->{snapshot} // '') ne 'false';
			if ($id =~ m{^([0-9A-F]+/[0-9A-F]+)/(\d+)$})
			{
				my ($lsn, $seq) = ($1, $2);
				$e{pos} = [ lsn_num($lsn), $seq ];
				push @errors, "$where: event_id $id, header commit_lsn " . ($h->{commit_lsn} // 'none')
				  if ($h->{commit_lsn} // '') ne $lsn;
				push @errors, "$where: event_id $id, but the event is not commit_lsn $lsn seq $seq"
				  if index($m->{value}, "\"commit_lsn\":\"$lsn\",\"seq\":$seq,") < 0;
				push @errors, "$where: change committed at $lsn, before the consistent point $cp"
				  if defined $cp && lsn_cmp($lsn, $cp) < 0;
			}
			else
			{
				push @errors, "$where: change with event_id '$id'";
			}
			$st{moved}++
			  if $op eq 'u' && defined $m->{key} && index($m->{value}, ",\"key\":$m->{key},") < 0;
		}
		push @{ $bykey{ $m->{key} } }, \%e if defined $m->{key};
	}
	for my $k (sort keys %bykey)
	{
		my $list = $bykey{$k};
		my ($changes, $rank, $max, %seen, %rows) = (0, -1, undef);
		for my $j (0 .. $#$list)
		{
			my $e = $list->[$j];
			next if $e->{tomb};
			if ($e->{op} eq 'r')
			{
				push @errors, "key $k: snapshot row ($e->{where}) after a change" if $changes;
				next unless defined $e->{cp};
				push @errors, "key $k: two snapshot rows of $e->{cp}" if $rows{ $e->{cp} }++;
				my $r = $rank{ $e->{cp} };
				next unless defined $r;
				push @errors, "key $k: snapshot row of $e->{cp} ($e->{where}) after one of a later snapshot"
				  if $r < $rank;
				$rank = $r;
				next;
			}
			next unless $e->{pos};
			$st{both}++ if %rows && !$changes;
			$changes++;
			my $p = $e->{pos};
			if (defined $max && ($p->[0] < $max->[0] || ($p->[0] == $max->[0] && $p->[1] <= $max->[1])))
			{
				if ($seen{ $e->{id} })
				{
					$st{replays}++;
				}
				else
				{
					push @errors, "key $k: event $e->{id} ($e->{where}) after $max->[2], and not a replay";
				}
			}
			else
			{
				$max = [ @$p, "$e->{id} ($e->{where})" ];
			}
			$seen{ $e->{id} } = 1;
			if ($tombstones && $e->{op} eq 'd')
			{
				my $next = $list->[ $j + 1 ];
				push @errors, "key $k: delete $e->{id} ($e->{where}) not followed by a tombstone"
				  unless $next && $next->{tomb};
			}
		}
	}
	$st{keys} = scalar(keys %bykey);
	return (\@errors, \%st);
}

=pod

=item table_rows($node, $table, \@keycols [, dbname => DB])

The table's rows as {key => row}: the key is the canonical JSON (sorted
names) of the key columns, the row the canonical JSON of the row as
json_agg writes it ($table is SQL: quote odd names).

=item kafka_rows(\@msgs)

Kafka's compacted view of a table topic (last_by_key) in the same form: the
canonical JSON of each key and of its last event's "after".

=item RelayTest::canonical_key($json)

The canonical JSON (sorted names) of a key given as JSON text, the form the
keys of table_rows and kafka_rows have.

=item compare_rows($name, \%kafka, \%table)

ok() when both have the same keys with the same rows; else a diag names up
to 5 missing, extra and different keys.  Returns what ok() returned.

=cut

my $canon = JSON::PP->new->canonical;

sub table_rows
{
	my ($node, $table, $keycols, %opt) = @_;
	my $rows = $canon->decode($node->safe_psql($opt{dbname} // 'postgres',
			"SELECT coalesce(json_agg(t.*), '[]') FROM $table t"));
	my %s;
	for my $row (@$rows)
	{
		$s{ $canon->encode({ map { ($_ => $row->{$_}) } @$keycols }) } = $canon->encode($row);
	}
	return \%s;
}

sub canonical_key
{
	my ($json) = @_;
	return $canon->encode($canon->decode($json));
}

sub kafka_rows
{
	my ($msgs) = @_;
	my $last = last_by_key($msgs);
	my %s;
	for my $k (keys %$last)
	{
		$s{ canonical_key($k) } = $canon->encode($canon->decode($last->{$k})->{after});
	}
	return \%s;
}

sub compare_rows
{
	my ($name, $kafka, $db) = @_;
	my @missing = grep { !exists $kafka->{$_} } sort keys %$db;
	my @extra = grep { !exists $db->{$_} } sort keys %$kafka;
	my @diff = grep { exists $kafka->{$_} && $kafka->{$_} ne $db->{$_} } sort keys %$db;
	my $first = sub { my @l = @_; return join(' ', @l[ 0 .. ($#l < 4 ? $#l : 4) ]) . ' (' . scalar(@l) . ')'; };
	return ok(!@missing && !@extra && !@diff,
		"$name: Kafka's last record per key equals the table (" . scalar(keys %$db) . ' rows)')
	  || diag("missing keys: " . $first->(@missing) . "\nextra keys: " . $first->(@extra)
		  . "\ndifferent: " . $first->(map { "$_: kafka $kafka->{$_} table $db->{$_}" } @diff));
}

=pod

=item slot_changes($node, $slot [, from => LSN, dbname => DB])

The insert, update and delete events a cdc_relay slot holds
(pg_logical_slot_peek_changes: the slot does not move), of transactions
committed at or after `from`: {event_id => {value => the event JSON as the
plugin writes it, table => "schema.table"}}.  An audit slot created before
the relay's sees every change the relay must deliver past its consistent
point (the relay's slot uses no table filter here).

=item check_delivered(\%changes, \@msgs, prefix => PREFIX)

Compares the changes of \%changes (slot_changes) with the change messages
of a relay's table topics (@msgs: consume's messages of all of them;
tombstones and snapshot rows are ignored): each change is in Kafka, in topic
PREFIX.schema.table (plain lower-case names, no topic encoding), its value
the plugin's JSON byte for byte; every copy of it (a replay) is identical;
Kafka holds no change that is not in \%changes.  Returns (\@errors, \%stats:
changes, delivered, copies = messages beyond the first per event_id).

=cut

sub slot_changes
{
	my ($node, $slot, %opt) = @_;
	my $from = $opt{from} // '0/0';
	my $out = $node->safe_psql($opt{dbname} // 'postgres', qq{
		SELECT (e->>'commit_lsn') || '/' || (e->>'seq'), (e->>'schema') || '.' || (e->>'table'), data
		FROM (SELECT data, data::jsonb AS e
		      FROM pg_logical_slot_peek_changes('$slot', NULL, NULL)) c
		WHERE e->>'op' IN ('c', 'u', 'd') AND (e->>'commit_lsn')::pg_lsn >= '$from'});
	my %c;
	for my $line (split /\n/, $out)
	{
		my ($id, $table, $value) = split /\|/, $line, 3;
		die "slot_changes: two events $id in slot $slot" if exists $c{$id};
		$c{$id} = { table => $table, value => $value };
	}
	return \%c;
}

sub check_delivered
{
	my ($changes, $msgs, %opt) = @_;
	my (@errors, %got);
	my %st = (changes => scalar(keys %$changes), delivered => 0, copies => 0);
	for my $m (@$msgs)
	{
		next if !defined $m->{value} || ($m->{headers}{op} // '') eq 'r';
		my $id = $m->{headers}{event_id} // '';
		my $where = "$m->{topic} partition $m->{partition} offset $m->{offset}";
		my $c = $changes->{$id};
		if (!$c)
		{
			push @errors, "$where: event $id is not a change the slot holds";
			next;
		}
		push @errors, "$where: event $id of table $c->{table} in the wrong topic"
		  if $m->{topic} ne "$opt{prefix}.$c->{table}";
		push @errors, "$where: event $id differs from the plugin's:\n  kafka $m->{value}\n  slot  $c->{value}"
		  if $m->{value} ne $c->{value};
		$got{$id}++ ? $st{copies}++ : $st{delivered}++;
	}
	my @missing = grep { !$got{$_} } sort { lsn_cmp($a =~ s{/\d+$}{}r, $b =~ s{/\d+$}{}r) || $a cmp $b } keys %$changes;
	push @errors, "event $_ ($changes->{$_}{table}) is not in Kafka" for @missing;
	return (\@errors, \%st);
}

=pod

=item consume_tables($bootstrap, $prefix, @tables)

consume() of each table's topic "$prefix.public.<table>": returns ({table =>
[messages]}, [every message]).

=item is_delivered($node, $audit_slot, $cp, \@all, %opt)

One named check: check_delivered() of the changes the audit slot holds from $cp
on against @all (every message of the table topics), prefix => the topic prefix,
name => the check's name; the first 10 problems go to a diag.  Returns
check_delivered()'s statistics ({changes, copies}).

=cut

sub consume_tables
{
	my ($bootstrap, $prefix, @tables) = @_;
	my (%msgs, @all);
	for my $t (@tables)
	{
		$msgs{$t} = [ consume($bootstrap, "$prefix.public.$t") ];
		push @all, @{ $msgs{$t} };
	}
	return (\%msgs, \@all);
}

sub is_delivered
{
	my ($node, $audit, $cp, $all, %opt) = @_;
	my ($errors, $st) = check_delivered(slot_changes($node, $audit, from => $cp), $all, prefix => $opt{prefix});
	is(scalar(@$errors), 0, $opt{name}
		  // 'every change committed after the consistent point is in Kafka as the plugin wrote it, and nothing else')
	  or diag(join("\n", @$errors[ 0 .. ($#$errors < 9 ? $#$errors : 9) ]));
	return $st;
}

# ---------------------------------------------------------------------------
# Exactly-once checks (--delivery exactly-once).

=pod

=item scan_topic($bootstrap, $topic, $format, $code [, isolation => LEVEL])

For topics too large for consume(): reads the whole topic once with kcat (-C -o
beginning -e -f "$format\n", isolation.level read_committed unless given) into a
temporary file and calls $code->($line) for each message's line (without the newline),
partition by partition in offset order.  The format must print only fields that hold no
newline (%p, %o, %k, %h, and %s of JSON values).  Returns the number of lines; 0 for a
topic that does not exist.

=cut

sub scan_topic
{
	my ($bootstrap, $topic, $format, $code, %opt) = @_;
	$bootstrap = $bootstrap->{bootstrap} if ref $bootstrap;
	return 0 unless grep { $_ eq $topic } topics($bootstrap);
	$counter++;
	my $file = "$PostgreSQL::Test::Utils::tmp_check/scan_$counter.txt";
	my $err = '';
	IPC::Run::run([ 'kcat', '-b', $bootstrap, '-C', '-t', $topic, '-o', 'beginning', '-e', '-q',
			'-X', 'isolation.level=' . ($opt{isolation} // 'read_committed'), '-X', 'fetch.wait.max.ms=10',
			'-f', $format . '\n' ],
		'<', \undef, '>', $file, '2>', \$err, IPC::Run::timeout(600))
	  or die "kcat -C -t $topic failed: $err";
	open(my $fh, '<', $file) or die "$file: $!";
	my $n = 0;
	while (my $line = <$fh>)
	{
		chomp $line;
		$code->($line);
		$n++;
	}
	close $fh;
	unlink $file;
	return $n;
}

=pod

=item slot_events($node, $slot [, from => LSN, dbname => DB, exclude => [TABLE, ...]])

What a relay must deliver, from an audit slot of the cdc_relay plugin created before the
relay's (pg_logical_slot_peek_changes: the slot does not move): the events of the
transactions committed at or after `from` (and the non-transactional logical messages
at or after it).  Returns {events => {"SUFFIX\tEVENT_ID" => {op, xid, value}}, txns =>
{xid => {commit_lsn, end_lsn, events, tables => {"schema.table" => n}, messages}}}:
SUFFIX is the topic name after "PREFIX." ("schema.table", or "messages" for logical
messages), EVENT_ID as the relay's event_id header (README "Kafka messages"); value is
the plugin's JSON (undef for truncates, which the relay writes per table).  Changes of
the `exclude`d tables (not captured by the relay) and the relay's heartbeats are left
out; txns holds only the transactions with at least one event left, with the counts
their end record in PREFIX.transactions must carry.

=cut

sub slot_events
{
	my ($node, $slot, %opt) = @_;
	my $from = lsn_num($opt{from} // '0/0');
	my %exclude = map { ($_ => 1) } @{ $opt{exclude} // [] };
	my $out = $node->safe_psql($opt{dbname} // 'postgres', qq{
		SELECT e->>'op', coalesce(e->>'xid', ''), coalesce(e->>'commit_lsn', ''),
		       coalesce(e->>'end_lsn', ''), coalesce(e->>'seq', ''),
		       coalesce((e->>'schema') || '.' || (e->>'table'), ''), coalesce(e->>'prefix', ''),
		       coalesce(e->>'transactional', ''), coalesce(e->>'lsn', ''),
		       coalesce((SELECT string_agg((x->>'schema') || '.' || (x->>'table'), ',')
		                 FROM jsonb_array_elements(e->'tables') x), ''),
		       data
		FROM (SELECT data, data::jsonb AS e FROM pg_logical_slot_peek_changes('$slot', NULL, NULL)) c});
	my (%events, %txns);
	for my $line (split /\n/, $out)
	{
		my ($op, $xid, $clsn, $end, $seq, $table, $prefix, $transactional, $lsn, $tables, $data) =
		  split /\|/, $line, 11;
		if ($op eq 'begin' || $op eq 'commit')
		{
			next unless lsn_num($clsn) >= $from;
			my $t = $txns{$xid} //= { commit_lsn => $clsn, events => 0, tables => {}, messages => 0 };
			$t->{end_lsn} = $end if $op eq 'commit';
			next;
		}
		if ($op eq 'm' && $transactional ne 'true')
		{
			next if $prefix eq 'cdc_relay.heartbeat' || lsn_num($lsn) < $from;
			$events{"messages\t$lsn/0"} = { op => 'm', xid => undef, value => $data };
			next;
		}
		next unless lsn_num($clsn) >= $from;
		my $t = $txns{$xid} //= { commit_lsn => $clsn, events => 0, tables => {}, messages => 0 };
		my $id = "$clsn/$seq";
		if ($op eq 'm')
		{
			next if $prefix eq 'cdc_relay.heartbeat';
			$events{"messages\t$id"} = { op => 'm', xid => $xid, value => $data };
			$t->{messages}++;
			$t->{events}++;
		}
		elsif ($op eq 't')
		{
			for my $tt (grep { !$exclude{$_} } split /,/, $tables)
			{
				$events{"$tt\t$id"} = { op => 't', xid => $xid, value => undef };
				$t->{tables}{$tt}++;
				$t->{events}++;
			}
		}
		else
		{
			next if $exclude{$table};
			die "slot_events: two events $id of $table in slot $slot" if exists $events{"$table\t$id"};
			$events{"$table\t$id"} = { op => $op, xid => $xid, value => $data };
			$t->{tables}{$table}++;
			$t->{events}++;
		}
	}
	delete $txns{$_} for grep { !$txns{$_}{events} } keys %txns;
	return { events => \%events, txns => \%txns };
}

=pod

=item check_exactly_once(\%events, \@msgs, prefix => PREFIX)

Compares \%events (slot_events()->{events}) with @msgs, consume's messages of the
table topics and PREFIX.messages read with read_committed: every event is there exactly
once, in its topic, its value the plugin's JSON byte for byte (not checked for
truncates); no message with an event_id that is not one of the events, except snapshot
rows (op r) and tombstones; each snapshot row's and each tombstone's event_id is there
once per topic, and a tombstone follows (by its event_id) a delete or update event of
\%events; every message has an event_id header (issue 9: every kind of message has
one).  Returns (\@errors, \%stats: events, delivered, duplicates, tombstones, r).

=cut

sub check_exactly_once
{
	my ($events, $msgs, %opt) = @_;
	my (@errors, %seen, %tomb, %rows, %where);
	my %st = (events => scalar(keys %$events), delivered => 0, duplicates => 0, tombstones => 0, r => 0);
	for my $m (@$msgs)
	{
		my $where = "$m->{topic} partition $m->{partition} offset $m->{offset}";
		my $id = $m->{headers}{event_id};
		if (!defined $id)
		{
			push @errors, "$where: no event_id header (op " . ($m->{headers}{op} // 'none') . ')';
			next;
		}
		my $suffix = substr($m->{topic}, length($opt{prefix}) + 1);
		my $k = "$suffix\t$id";
		if (!defined $m->{value})
		{
			$st{tombstones}++;
			push @{ $where{tomb}{$k} }, $where;
			my ($base) = $id =~ m{^(.*)/tombstone$};
			my $e = defined $base ? $events->{"$suffix\t$base"} : undef;
			push @errors, "$where: tombstone $id does not follow a committed delete or update"
			  unless $e && ($e->{op} eq 'd' || $e->{op} eq 'u');
			$tomb{$k}++;
		}
		elsif (($m->{headers}{op} // '') eq 'r')
		{
			$st{r}++;
			push @{ $where{r}{$k} }, $where;
			$rows{$k}++;
		}
		else
		{
			push @{ $where{ev}{$k} }, $where;
			my $e = $events->{$k};
			if (!$e)
			{
				push @errors, "$where: event $id is not a committed event of $suffix";
				next;
			}
			push @errors, "$where: event $id differs from the plugin's:\n  kafka $m->{value}\n  slot  $e->{value}"
			  if defined $e->{value} && $m->{value} ne $e->{value};
			$st{delivered}++ unless $seen{$k}++;
		}
	}
	for my $kind ([ 'event', \%seen, 'ev' ], [ 'tombstone', \%tomb, 'tomb' ], [ 'snapshot row', \%rows, 'r' ])
	{
		my ($what, $count, $w) = @$kind;
		for my $k (sort grep { $count->{$_} > 1 } keys %$count)
		{
			$st{duplicates} += $count->{$k} - 1;
			push @errors, "$what " . ($k =~ s/\t/ /r) . " is in Kafka $count->{$k} times: " . join(', ', @{ $where{$w}{$k} });
		}
	}
	for my $k (sort { lsn_cmp((split m{\t|/(?=\d+$)}, $a)[1], (split m{\t|/(?=\d+$)}, $b)[1]) || $a cmp $b }
		grep { !$seen{$_} } keys %$events)
	{
		push @errors, "event " . ($k =~ s/\t/ /r) . " ($events->{$k}{op}, xid " . ($events->{$k}{xid} // 'none') . ') is not in Kafka';
	}
	return (\@errors, \%st);
}

=pod

=item check_transactions(\%txns, \@records)

Compares \%txns (slot_events()->{txns}) with @records, consume's messages of
PREFIX.transactions: each transaction has exactly one begin and one end record, key the
xid as decimal text, headers op, xid and commit_lsn matching the value, the begin
before the end (same partition, lower offset), commit_lsn and end_lsn its own, and the
end record's events, tables and messages the counts of \%txns (events = the sum of
tables + messages); no record for any other transaction.  Returns (\@errors, \%stats:
txns, records).

=cut

sub check_transactions
{
	my ($txns, $records) = @_;
	my (@errors, %by);
	my $json = JSON::PP->new->canonical;
	for my $m (@$records)
	{
		my $where = "$m->{topic} partition $m->{partition} offset $m->{offset}";
		my $v = defined $m->{value} ? eval { $json->decode($m->{value}) } : undef;
		if (!$v || !defined $m->{key})
		{
			push @errors, "$where: not a transaction record: key " . ($m->{key} // 'null') . ', value ' . ($m->{value} // 'null');
			next;
		}
		my $h = $m->{headers};
		my $op = $v->{op} // '';
		push @errors, "$where: key $m->{key} is not the xid $v->{xid}" if $m->{key} ne ($v->{xid} // '');
		push @errors, "$where: header op " . ($h->{op} // 'none') . ", value op $op" if ($h->{op} // '') ne $op;
		push @errors, "$where: header xid " . ($h->{xid} // 'none') . " of xid $m->{key}" if ($h->{xid} // '') ne $m->{key};
		push @errors, "$where: header commit_lsn " . ($h->{commit_lsn} // 'none') . ", value " . ($v->{commit_lsn} // 'none')
		  if ($h->{commit_lsn} // '') ne ($v->{commit_lsn} // '');
		if ($op ne 'begin' && $op ne 'commit')
		{
			push @errors, "$where: op $op";
			next;
		}
		push @{ $by{ $m->{key} }{$op} }, { v => $v, where => $where, p => $m->{partition}, o => $m->{offset} };
	}
	for my $xid (sort { $a <=> $b } keys %by)
	{
		my $t = $txns->{$xid};
		my ($b, $c) = ($by{$xid}{begin} // [], $by{$xid}{commit} // []);
		if (!$t)
		{
			push @errors, "xid $xid has transaction records but committed no captured event: "
			  . join(', ', map { $_->{where} } @$b, @$c);
			next;
		}
		push @errors, "xid $xid has " . scalar(@$b) . " begin records: " . join(', ', map { $_->{where} } @$b) if @$b != 1;
		push @errors, "xid $xid has " . scalar(@$c) . " end records: " . join(', ', map { $_->{where} } @$c) if @$c != 1;
		next unless @$b && @$c;
		my ($bv, $cv) = ($b->[0]{v}, $c->[0]{v});
		push @errors, "xid $xid: the begin record ($b->[0]{where}) does not come before the end record ($c->[0]{where})"
		  unless $b->[0]{p} == $c->[0]{p} && $b->[0]{o} < $c->[0]{o};
		push @errors, "xid $xid: begin commit_lsn " . ($bv->{commit_lsn} // 'none') . ", the transaction's is $t->{commit_lsn}"
		  if ($bv->{commit_lsn} // '') ne $t->{commit_lsn};
		push @errors, "xid $xid: begin record without ts" unless defined $bv->{ts};
		for my $f (qw(commit_lsn end_lsn events messages))
		{
			push @errors, "xid $xid: end record $f " . ($cv->{$f} // 'none') . ", expected $t->{$f}"
			  if ($cv->{$f} // '') ne $t->{$f};
		}
		my $tables = $json->encode($cv->{tables} // {});
		push @errors, "xid $xid: end record tables $tables, expected " . $json->encode($t->{tables})
		  if $tables ne $json->encode($t->{tables});
		my $sum = ($cv->{messages} // 0);
		$sum += $_ for values %{ $cv->{tables} // {} };
		push @errors, "xid $xid: end record events " . ($cv->{events} // 'none') . " is not tables + messages ($sum)"
		  if ($cv->{events} // -1) != $sum;
	}
	for my $xid (sort { $a <=> $b } grep { !$by{$_} } keys %$txns)
	{
		push @errors, "xid $xid (commit_lsn $txns->{$xid}{commit_lsn}, $txns->{$xid}{events} events) has no transaction records";
	}
	return (\@errors, { txns => scalar(keys %$txns), records => scalar(@$records) });
}

END
{
	my $rc = $?;
	for my $p (reverse @to_kill)
	{
		eval { $p->_kill_at_exit; };
	}
	$? = $rc;
}

1;
