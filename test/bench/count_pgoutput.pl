#!/usr/bin/perl
# Counts the row changes in a file written by
#   pg_recvlogical -P pgoutput -o proto_version=1 ... -f FILE
# (binary pgoutput messages, each followed by a newline) and prints
#   "<inserts> <updates> <deletes>".
# Used by test/bench/run.sh to check that pgoutput decoded every change; it
# walks every message so that a newline inside a value cannot fool it.
use strict;
use warnings;

my $file = shift @ARGV or die "usage: $0 FILE\n";
open(my $fh, '<:raw', $file) or die "$0: cannot open $file: $!\n";
my $buf = do { local $/; <$fh> };
close $fh;
$buf = '' unless defined $buf;

my $len = length $buf;
my $pos = 0;
my %n = (I => 0, U => 0, D => 0);

sub need { die sprintf("%s: truncated message at offset %d\n", $file, $pos) if $pos + $_[0] > $len }
sub cstr {
    my $end = index($buf, "\0", $pos);
    die "$file: unterminated string at offset $pos\n" if $end < 0;
    $pos = $end + 1;
}
sub tuple {
    need(2);
    my $natts = unpack('n', substr($buf, $pos, 2));
    $pos += 2;
    for (1 .. $natts) {
        need(1);
        my $kind = substr($buf, $pos++, 1);
        next if $kind eq 'n' || $kind eq 'u';
        die "$file: bad column kind '$kind' at offset " . ($pos - 1) . "\n" unless $kind eq 't' || $kind eq 'b';
        need(4);
        my $l = unpack('N', substr($buf, $pos, 4));
        $pos += 4 + $l;
        need(0);
    }
}

while ($pos < $len) {
    my $tag = substr($buf, $pos++, 1);
    if ($tag eq 'B') { $pos += 20 }
    elsif ($tag eq 'C') { $pos += 25 }
    elsif ($tag eq 'O') { $pos += 8; cstr() }
    elsif ($tag eq 'Y') { $pos += 4; cstr(); cstr() }
    elsif ($tag eq 'R') {
        $pos += 4; cstr(); cstr(); $pos += 1;
        need(2);
        my $natts = unpack('n', substr($buf, $pos, 2));
        $pos += 2;
        for (1 .. $natts) { $pos += 1; cstr(); $pos += 8 }
    }
    elsif ($tag eq 'I') { $pos += 4; need(1); $pos++; tuple(); $n{I}++ }
    elsif ($tag eq 'U') {
        $pos += 4; need(1);
        my $k = substr($buf, $pos++, 1);
        if ($k eq 'K' || $k eq 'O') { tuple(); need(1); $k = substr($buf, $pos++, 1) }
        die "$file: expected 'N' in update at offset $pos\n" unless $k eq 'N';
        tuple(); $n{U}++;
    }
    elsif ($tag eq 'D') { $pos += 4; need(1); $pos++; tuple(); $n{D}++ }
    elsif ($tag eq 'T') {
        need(4);
        my $nrels = unpack('N', substr($buf, $pos, 4));
        $pos += 5 + 4 * $nrels;
    }
    elsif ($tag eq 'M') {
        $pos += 9; cstr(); need(4);
        my $l = unpack('N', substr($buf, $pos, 4));
        $pos += 4 + $l;
    }
    else { die sprintf("%s: unknown message type 0x%02x at offset %d\n", $file, ord $tag, $pos - 1) }
    need(1);
    die "$file: missing newline after message at offset $pos\n" unless substr($buf, $pos, 1) eq "\n";
    $pos++;
}
print "$n{I} $n{U} $n{D}\n";
