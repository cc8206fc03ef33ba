# test/tap/117_chaos.pl: a short chaos run (test/chaos/Chaos.pm: pgbench writers, the
# relay into a real 3-node Kafka cluster, a few fault rounds at random moments, then the
# error-injection phase on the test broker), whose summary line must be all zeros; then a
# self-check that the checker can fail: into the Kafka topics the run left, kcat writes a
# copy of an event (a duplicate, and the key's last record no longer the table's row), an
# older event of another key under a key (out of order), and a message with the rolled-
# back marker; the checker also runs with one committed event treated as missing (lost,
# and its transaction partial).  The full run is `make chaos` (test/chaos/run.sh).
# CHAOS_SEED repeats a run's choices.  Needs nodes this test starts: skipped with
# CDC_RELAY_KAFKA_BROKERS.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../chaos";
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use RelayTest;
use Chaos;

plan skip_all => 'kills brokers: needs a cluster this test starts (CDC_RELAY_KAFKA_BROKERS is set)'
  if $ENV{CDC_RELAY_KAFKA_BROKERS};

my $r = Chaos::run(
	rounds => 6,
	mock_rounds => 2,
	docs => 10000,
	txn_max => 500,
	split_rows => 6000,
	seed => (defined $ENV{CHAOS_SEED} && $ENV{CHAOS_SEED} ne '' ? $ENV{CHAOS_SEED} : undef),
	keep => 1);
my @bad = Chaos::failures($r->{line});
is(join(', ', @bad), '', 'short chaos run: every counter of the summary line is 0');
like($r->{line}, qr/events checked [1-9]\d{3,}/, 'the run checked thousands of events');

# ---- the checker can fail ----------------------------------------------------------------
my ($c, $bootstrap) = ($r->{c}, $r->{c}{bootstrap});
my $topic = "$c->{prefix}.public.acct";
my @msgs = grep { defined $_->{value} && ($_->{headers}{op} // '') =~ /^[cu]$/ }
  consume($bootstrap, $topic, isolation => 'read_committed');
my %by_key;
push @{ $by_key{ $_->{key} } }, $_ for @msgs;
my ($k1) = grep { @{ $by_key{$_} } >= 2 } sort keys %by_key;
my $first = $by_key{$k1}[0];
my $last = $by_key{$k1}[-1];
my ($older) = grep { $_->{key} ne $k1 && lsn_cmp($_->{headers}{commit_lsn}, $last->{headers}{commit_lsn}) < 0 } @msgs;
ok($k1 && $older, "a key with two changes ($k1) and an older change of another key ($older->{headers}{event_id})");

# produce($topic, $partition, $key, \%headers, $value): one record written by kcat
sub produce
{
	my ($t, $p, $key, $h, $value) = @_;
	my ($out, $err) = ('', '');
	my @cmd = ('kcat', '-P', '-b', $bootstrap, '-t', $t, (defined $p ? ('-p', $p) : ()), '-k', $key,
		map { ('-H', "$_=$h->{$_}") } sort keys %$h);
	IPC::Run::run(\@cmd, '<', \"$value\n", '>', \$out, '2>', \$err, IPC::Run::timeout(60))
	  or die "kcat -P failed: $err";
}
produce($topic, $first->{partition}, $k1, $first->{headers}, $first->{value});
produce($topic, $first->{partition}, $k1, $older->{headers}, $older->{value});
produce("$c->{prefix}.messages", undef, 'chaos', { op => 'm' },
	'{"op":"m","prefix":"chaos","transactional":false,"content":"ROLLEDBACK"}');
my $n = Chaos::check(node => $r->{node}, db => 'postgres', audit => 'audit', bootstrap => $bootstrap,
	prefix => $c->{prefix}, cps => $c->{cps}, txn_records => $r->{eo}, drop => $last->{headers}{event_id});
note('self-check: ' . join(', ', map { "$_ $n->{$_}" } @Chaos::COUNTERS));
cmp_ok($n->{duplicated}, '>=', 2, 'self-check: the copies are counted as duplicated');
cmp_ok($n->{'out of order'}, '>=', 1, 'self-check: the older event of another key is out of order');
cmp_ok($n->{'state mismatches'}, '>=', 1, 'self-check: the key\'s last record is no longer the table\'s row');
cmp_ok($n->{'rolled back'}, '>=', 1, 'self-check: the marker is found');
is($n->{lost}, 1, 'self-check: the dropped event is lost');
SKIP:
{
	skip 'no transaction records (no --delivery in this relay)', 1 unless $r->{eo};
	cmp_ok($n->{'partial transactions'}, '>=', 1, 'self-check: its transaction is partial');
}

$r->{kafka}->stop;
$r->{node}->stop;
done_testing();
