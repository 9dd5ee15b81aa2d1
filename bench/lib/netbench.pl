#!/usr/bin/perl
# A small iperf for bench/network.sh, run both in guests (whose perl is
# perl-base only: IO::Socket::INET, Socket, Time::HiRes, POSIX) and on the
# host, so that both ends of every measurement are the same code.
#
#   netbench.pl sink PORT          accepts connections one after another; reads
#                                  each to EOF and answers with the number of
#                                  bytes it read
#   netbench.pl echo PORT          accepts connections one after another (no
#                                  fork in a timing); sends back what it reads
#   netbench.pl send HOST PORT MIB sends MIB MiB of zeros to a sink, half-
#                                  closes and waits for its count: prints
#                                  "BYTES SECONDS MBIT/S", connect to count
#                                  received (so the bytes are delivered, not
#                                  buffered)
#   netbench.pl rtt HOST PORT N    one connection to an echo server, N 32-byte
#                                  request/reply round trips: prints each in ms
#   netbench.pl connect HOST PORT N
#                                  N new connections to an echo server, each
#                                  timed from connect to its first reply (on
#                                  qemu's user networking the host's connect
#                                  alone returns before the guest is asked):
#                                  prints each in ms
# A client looks HOST up once, before any timing. A server detaches (its own
# session, output to /dev/null) once it listens, so that `kiln exec` returns.
# Exit status non-zero with a message on any failure. Not a benchmark:
# run-all runs only bench/*.sh.
use strict;
use warnings;
use IO::Socket::INET;
use Socket qw(IPPROTO_TCP TCP_NODELAY SHUT_WR inet_aton inet_ntoa);
use Time::HiRes qw(time);
use POSIX qw(setsid);

my $mode = shift // '';
$SIG{PIPE} = 'IGNORE';

sub listener {
  my ($port) = @_;
  my $server = IO::Socket::INET->new(LocalPort => $port, Listen => 16, ReuseAddr => 1, Proto => 'tcp')
    or die "netbench: listen on $port: $@\n";
  # Listening: detach, the parent exits and the caller goes on.
  defined(my $pid = fork) or die "netbench: fork: $!\n";
  exit 0 if $pid;
  setsid();
  open STDIN, '<', '/dev/null';
  open STDOUT, '>', '/dev/null';
  open STDERR, '>', '/dev/null';
  return $server;
}

# HOST's address, looked up once: a name's lookup is in no timing.
sub address_of {
  my ($host) = @_;
  my $address = inet_aton($host) or die "netbench: $host: no such host\n";
  return inet_ntoa($address);
}

sub connected {
  my ($host, $port) = @_;
  my $socket = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Proto => 'tcp', Timeout => 20)
    or die "netbench: connect to $host:$port: $@\n";
  setsockopt($socket, IPPROTO_TCP, TCP_NODELAY, 1);
  return $socket;
}

# One 32-byte request and its whole reply: the time in ms.
sub round_trip {
  my ($socket) = @_;
  my $start = time;
  my $request = 'x' x 32;
  syswrite($socket, $request) == 32 or die "netbench: write: $!\n";
  my $got = 0;
  while ($got < 32) {
    my $n = sysread($socket, my $buffer, 32 - $got);
    die "netbench: the echo server closed the connection\n" unless $n;
    $got += $n;
  }
  return (time - $start) * 1000;
}

if ($mode eq 'sink') {
  my $server = listener($ARGV[0]);
  while (my $client = $server->accept) {
    my ($total, $buffer) = (0);
    while (my $n = sysread($client, $buffer, 1 << 20)) { $total += $n }
    syswrite($client, "$total\n");
    close $client;
  }
} elsif ($mode eq 'echo') {
  my $server = listener($ARGV[0]);
  while (my $client = $server->accept) {
    setsockopt($client, IPPROTO_TCP, TCP_NODELAY, 1);
    while (my $n = sysread($client, my $buffer, 65536)) { syswrite($client, $buffer, $n) }
    close $client;
  }
} elsif ($mode eq 'send') {
  my ($host, $port, $mib) = @ARGV;
  $host = address_of($host);
  my $chunk = "\0" x 65536;
  my $bytes = $mib * 1048576;
  my $start = time;
  my $socket = connected($host, $port);
  for (my $left = $bytes; $left > 0;) {
    my $n = syswrite($socket, $chunk, $left < 65536 ? $left : 65536);
    die "netbench: write: $!\n" unless $n;
    $left -= $n;
  }
  shutdown($socket, SHUT_WR);
  my $reply = <$socket>;
  my $seconds = time - $start;
  die "netbench: the sink did not answer\n" unless defined $reply;
  chomp $reply;
  die "netbench: sent $bytes bytes, the sink counted $reply\n" unless $reply == $bytes;
  printf "%d %.4f %.1f\n", $bytes, $seconds, $bytes * 8 / 1e6 / $seconds;
} elsif ($mode eq 'rtt') {
  my ($host, $port, $count) = @ARGV;
  $host = address_of($host);
  my $socket = connected($host, $port);
  round_trip($socket);  # untimed: the first goes through the connection's set-up
  printf "%.3f\n", round_trip($socket) for 1 .. $count;
} elsif ($mode eq 'connect') {
  my ($host, $port, $count) = @ARGV;
  $host = address_of($host);
  for (1 .. $count) {
    my $start = time;
    my $socket = connected($host, $port);
    round_trip($socket);
    printf "%.3f\n", (time - $start) * 1000;
    close $socket;
  }
} else {
  die "usage: netbench.pl sink PORT | echo PORT | send HOST PORT MIB | rtt HOST PORT N | connect HOST PORT N\n";
}
