# test/chaos/chaos.pl: the full chaos run (`make chaos`; Chaos.pm says what it does).
#   CHAOS_ROUNDS   fault rounds against the 3-node Kafka cluster (default 24)
#   CHAOS_SEED     the seed of every random choice (default: from the time; printed)
#   CHAOS_MOCK_ROUNDS  error injections in the test-broker phase (default 9)
#   CHAOS_KINDS    the fault kinds, comma-separated (default: all; see Chaos.pm)
# Passes when the summary line's counters are all 0.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use PostgreSQL::Test::Utils;
use Test::More;
use Chaos;

# env($name): the variable's value, undef when unset or empty
sub env { return defined $ENV{ $_[0] } && $ENV{ $_[0] } ne '' ? $ENV{ $_[0] } : undef; }

my $r = Chaos::run(
	rounds => env('CHAOS_ROUNDS') // 24,
	seed => env('CHAOS_SEED'),
	mock_rounds => env('CHAOS_MOCK_ROUNDS') // 9,
	($ENV{CHAOS_KINDS} ? (kinds => [ split /,/, $ENV{CHAOS_KINDS} ]) : ()));
my @bad = Chaos::failures($r->{line});
is(join(', ', @bad), '', 'chaos: every counter of the summary line is 0');
done_testing();
