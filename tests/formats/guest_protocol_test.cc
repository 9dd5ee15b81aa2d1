// The guest protocol: the readiness report as the host reads it from the
// console (whole lines, as the supervisor hands them over), and the guest
// agent's script speaking the same words the host listens for.
#include "formats/image/guest_protocol.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>
#include <vector>

#include "builder/guest_agent.h"

namespace kiln {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const ReadyLine kWeb1 = {"0123456789abcdef", "web1", "0123456789abcdef0123456789abcdef", "52:54:00:12:34:56",
                         "kiln", "1"};

// A serial console as qemu's -serial stdio passes it on: "\r\n" line ends,
// systemd's coloured status, a kernel message, the report, the login prompt.
constexpr std::string_view kConsole =
    "[\x1b[0;32m  OK  \x1b[0m] Finished \x1b[0;1;39mkiln-firstboot.service\x1b[0m - kiln first-boot script.\r\n"
    "[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mmulti-user.target\x1b[0m - Multi-User System.\r\n"
    "         Starting \x1b[0;1;39mkiln-ready.service\x1b[0m - kiln readiness signal...\r\n"
    "[    4.218532] random: crng init done\r\n"
    "\r\n"
    "KILN-READY 0123456789abcdef hostname=web1 machine-id=0123456789abcdef0123456789abcdef "
    "mac=52:54:00:12:34:56 ssh-host-keys=kiln exec=1\r\n"
    "\r\n"
    "Debian GNU/Linux 12 web1 ttyS0\r\n"
    "\r\n"
    "web1 login: ";

std::vector<ReadyLine> reports_in(std::string_view console) {
  std::vector<ReadyLine> reports;
  for (size_t start = 0, end; (end = console.find('\n', start)) != std::string_view::npos; start = end + 1)
    if (auto ready = parse_ready_line(console.substr(start, end - start))) reports.push_back(*ready);
  return reports;
}

TEST(GuestProtocol, TheReportIsTheKeywordTheIdAndNamedFields) {
  EXPECT_EQ(format_ready_line(kWeb1),
            "KILN-READY 0123456789abcdef hostname=web1 machine-id=0123456789abcdef0123456789abcdef "
            "mac=52:54:00:12:34:56 ssh-host-keys=kiln exec=1");
  EXPECT_EQ(parse_ready_line(format_ready_line(kWeb1)), kWeb1);
}

TEST(GuestProtocol, OneLineOfAConsoleIsTheReport) {
  EXPECT_THAT(reports_in(kConsole), ElementsAre(kWeb1));
}

TEST(GuestProtocol, WhatTheKernelWroteBeforeTheKeywordOnTheSameLineIsSkipped) {
  EXPECT_EQ(parse_ready_line("[    9.871002] rcu: INFO: stall ended" + format_ready_line(kWeb1) + "\r"), kWeb1);
}

TEST(GuestProtocol, AFieldTheGuestLeftEmptyIsEmpty) {
  auto ready = parse_ready_line("KILN-READY 0123456789abcdef hostname=web1 machine-id= mac=none ssh-host-keys=none");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->machine_id, "");
  EXPECT_EQ(ready->mac, "none");
  EXPECT_EQ(ready->ssh_host_keys, kHostKeysNone);
}

// Images baked by an older kiln keep their agent: its shorter report still
// says the guest is up, and what it did not say stays empty.
TEST(GuestProtocol, AnOlderAgentsShorterReportIsStillOne) {
  auto ready = parse_ready_line("KILN-READY 0123456789abcdef hostname=web1 mac=52:54:00:12:34:56\r");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->id, "0123456789abcdef");
  EXPECT_EQ(ready->hostname, "web1");
  EXPECT_EQ(ready->mac, "52:54:00:12:34:56");
  EXPECT_EQ(ready->ssh_host_keys, "");
}

// A newer agent may say more: fields this reader does not know, and words
// that are not fields, are skipped rather than costing the readiness.
TEST(GuestProtocol, UnknownFieldsAndStrayWordsAreSkipped) {
  EXPECT_EQ(parse_ready_line(format_ready_line(kWeb1) + " uptime=3.2 channel=virtio-serial later"), kWeb1);
}

TEST(GuestProtocol, AKeywordWithoutAnIdIsNotAReport) {
  EXPECT_FALSE(parse_ready_line("KILN-READY"));
  EXPECT_FALSE(parse_ready_line("KILN-READY\r"));
  EXPECT_FALSE(parse_ready_line("KILN-READY \r"));
  EXPECT_FALSE(parse_ready_line("KILN-READY  0123456789abcdef hostname=web1"));  // the id is the next word
  EXPECT_FALSE(parse_ready_line("KILN-READY hostname=web1 machine-id=0123 mac=none ssh-host-keys=own"));
  EXPECT_FALSE(parse_ready_line("KILN-READYNESS 0123456789abcdef"));
  EXPECT_FALSE(parse_ready_line("kiln-ready 0123456789abcdef"));
  EXPECT_FALSE(parse_ready_line("         Starting kiln-ready.service - kiln readiness signal..."));
}

TEST(GuestProtocol, AFalseStartBeforeTheReportOnTheSameLineIsSkipped) {
  EXPECT_EQ(parse_ready_line("KILN-READY" + format_ready_line(kWeb1)), kWeb1);
}

// The agent's script is built from the protocol's words, so the two sides
// cannot drift apart: it finds the seed disk by the label and the kernel
// argument the host gives, reads the files the host writes, and prints the
// report the host parses.
TEST(GuestProtocol, TheAgentScriptSpeaksIt) {
  std::string script = guest_agent_script();
  EXPECT_THAT(script, HasSubstr(fmt::format("blkid -L {} ", kSeedLabel)));
  EXPECT_THAT(script, HasSubstr(fmt::format("{}/dev/*) dev=${{word#{}}}", kSeedArgument, kSeedArgument)));
  EXPECT_THAT(script, HasSubstr(fmt::format("*\" {}\"*) tries=100", kInstanceArgument)));
  EXPECT_THAT(script, HasSubstr(fmt::format("*\" {} \"*)", kSlirpArgument)));
  for (std::string_view file : {kSeedInstanceId, kSeedHostname, kSeedAuthorizedKeys, kSeedSshHostKeys,
                                kSeedFirstboot, kSeedFiles, kSeedHosts})
    EXPECT_THAT(script, HasSubstr(fmt::format("\"$seed{}", file))) << file;

  std::string report = format_ready_line({"$id", "$host", "$machine_id", "$mac", "$keys", "$exec"});
  EXPECT_THAT(script, HasSubstr(fmt::format("say \"$tty\" \"{}\"", report)));
  EXPECT_EQ(parse_ready_line(report), ReadyLine({"$id", "$host", "$machine_id", "$mac", "$keys", "$exec"}));
  EXPECT_THAT(script, HasSubstr(fmt::format("exec={}\n", kExecProtocolVersion)));
  for (std::string_view keys : {kHostKeysFromKiln, kHostKeysOwn, kHostKeysNone})
    EXPECT_THAT(script, HasSubstr(fmt::format("keys={}\n", keys))) << keys;

  // The no-NICs flag: made from the kernel's word, removed on a resume
  // with NICs before the network daemons start.
  EXPECT_THAT(script, HasSubstr(fmt::format("no_nics={}\n", kNoNicsFlag)));
  EXPECT_THAT(script, HasSubstr(fmt::format("*\" {} \"*) mkdir -p \"${{no_nics%/*}}\" && : > \"$no_nics\"",
                                            kNoNicsArgument)));
  EXPECT_THAT(script, HasSubstr("rm -f \"$no_nics\"\n    systemctl --no-block start systemd-networkd.socket "
                                "systemd-networkd.service systemd-resolved.service"));

  EXPECT_FALSE(std::regex_search(script, std::regex("@[A-Z_]+@"))) << "a marker left unreplaced";
}

}  // namespace
}  // namespace kiln
