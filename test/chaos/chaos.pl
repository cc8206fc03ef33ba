# test/chaos/chaos.pl: the full chaos run (`make chaos`; Chaos.pm says what it does).
#   CHAOS_ROUNDS   fault rounds against the 3-node Kafka cluster (default 24)
#   CHAOS_SEED     the seed of every random choice (default: from the time; printed)
#   CHAOS_MOCK_ROUNDS  error injections in the test-broker phase (default 6)
#   CHAOS_KINDS    the fault kinds, comma-separated (default: all; see Chaos.pm)
# Passes when the summary line's counters are all 0.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use PostgreSQL::Test::Utils;
use Test::More;
use Chaos;

my $r = Chaos::run(
	rounds => $ENV{CHAOS_ROUNDS} || 24,
	seed => (defined $ENV{CHAOS_SEED} && $ENV{CHAOS_SEED} ne '' ? $ENV{CHAOS_SEED} : undef),
	mock_rounds => $ENV{CHAOS_MOCK_ROUNDS} || 6,
	($ENV{CHAOS_KINDS} ? (kinds => [ split /,/, $ENV{CHAOS_KINDS} ]) : ()));
my @bad = Chaos::failures($r->{line});
is(join(', ', @bad), '', 'chaos: every counter of the summary line is 0');
done_testing();
