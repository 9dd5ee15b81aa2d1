// What the supervisor hears on a guest's console: the readiness report, a
// passphrase prompt that ends no line, a kernel's panic and restart (its own
// lines only, not the same words in someone else's), however the console's
// bytes are cut into reads; and what an error shows of a console log.
#include "runtime/console_scanner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kiln {
namespace {

using Kind = ConsoleEvent::Kind;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// An encrypted root's boot on a serial console: the initramfs asks, the
// system comes up, the agent reports.
constexpr std::string_view kEncryptedBoot =
    "[    1.902114] sd 0:0:0:0: [sda] Attached SCSI disk\r\n"
    "Please unlock disk cryptroot: "
    "\r\n"
    "cryptsetup: cryptroot: set up successfully\r\n"
    "[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mmulti-user.target\x1b[0m - Multi-User System.\r\n"
    "KILN-READY 0123456789abcdef hostname=web1 machine-id=0123456789abcdef0123456789abcdef "
    "mac=none ssh-host-keys=kiln\r\n"
    "\r\n"
    "web1 login: ";

std::vector<Kind> kinds(const std::vector<ConsoleEvent>& events) {
  std::vector<Kind> out;
  for (const ConsoleEvent& event : events) out.push_back(event.kind);
  return out;
}

std::vector<ConsoleEvent> feed_in_pieces(std::string_view text, size_t piece) {
  ConsoleScanner scanner;
  std::vector<ConsoleEvent> events;
  for (size_t at = 0; at < text.size(); at += piece) {
    auto more = scanner.feed(text.substr(at, piece));
    events.insert(events.end(), more.begin(), more.end());
  }
  return events;
}

TEST(ConsoleScanner, FindsThePromptThenTheReportInOrder) {
  ConsoleScanner scanner;
  auto events = scanner.feed(kEncryptedBoot);
  ASSERT_THAT(kinds(events), ElementsAre(Kind::kUnlockPrompt, Kind::kReady));
  EXPECT_EQ(events[0].disk, "cryptroot");
  EXPECT_EQ(events[1].ready.id, "0123456789abcdef");
  EXPECT_EQ(events[1].ready.hostname, "web1");
  EXPECT_EQ(events[1].ready.ssh_host_keys, "kiln");
}

TEST(ConsoleScanner, HearsTheSameWhateverPiecesTheBytesComeIn) {
  auto whole = ConsoleScanner().feed(kEncryptedBoot);
  for (size_t piece : {1u, 2u, 7u, 64u})
    EXPECT_EQ(feed_in_pieces(kEncryptedBoot, piece), whole) << "pieces of " << piece;
}

TEST(ConsoleScanner, APromptCountsOnceItsColonHasCome) {
  ConsoleScanner scanner;
  EXPECT_THAT(scanner.feed("Please unlock disk crypt"), IsEmpty());
  auto events = scanner.feed("root: ");
  ASSERT_THAT(kinds(events), ElementsAre(Kind::kUnlockPrompt));
  EXPECT_EQ(events[0].disk, "cryptroot");
  // The prompt is not heard again when the guest echoes a line end.
  EXPECT_THAT(scanner.feed("\r\n"), IsEmpty());
}

TEST(ConsoleScanner, AWrongPassphraseMeansASecondPrompt) {
  auto events = ConsoleScanner().feed(
      "Please unlock disk cryptroot: \r\ncryptsetup: ERROR: cryptroot: cryptsetup failed, bad password or options?\r\n"
      "Please unlock disk cryptroot: ");
  EXPECT_THAT(kinds(events), ElementsAre(Kind::kUnlockPrompt, Kind::kUnlockPrompt));
}

TEST(ConsoleScanner, HearsAKernelPanicAndARestart) {
  auto events = ConsoleScanner().feed(
      "[    0.912345] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n"
      "[   12.000001] reboot: Restarting system\n");
  ASSERT_THAT(kinds(events), ElementsAre(Kind::kKernelPanic, Kind::kKernelRestart));
  EXPECT_EQ(events[0].panic, "VFS: Unable to mount root fs on unknown-block(0,0)");
}

// init=/bin/false under qemu, as the serial console shows it: the panic
// line, the report, and the line that ends it.
constexpr std::string_view kInitPanic =
    "[    2.905412] Run /bin/false as init process\r\n"
    "[    2.906001]   with arguments:\r\n"
    "[    2.906210]     /bin/false\r\n"
    "[    2.951234] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\r\n"
    "[    2.952001] CPU: 0 PID: 1 Comm: false Not tainted 6.1.0-18-amd64 #1  Debian 6.1.76-1\r\n"
    "[    2.952990] Call Trace:\r\n"
    "[    2.953511]  <TASK>\r\n"
    "[    2.960000] Kernel Offset: 0x1a00000 from 0xffffffff81000000\r\n"
    "[    2.961000] ---[ end Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100 ]---\r\n";

TEST(ConsoleScanner, HearsAPanicWithItsReasonThenTheEndOfItsReport) {
  auto events = ConsoleScanner().feed(kInitPanic);
  ASSERT_THAT(kinds(events), ElementsAre(Kind::kKernelPanic, Kind::kKernelPanicEnd));
  EXPECT_EQ(events[0].panic, "Attempted to kill init! exitcode=0x00000100");
  for (size_t piece : {1u, 3u, 50u}) EXPECT_EQ(feed_in_pieces(kInitPanic, piece), events) << "pieces of " << piece;
}

// The words typed at a shell, echoed back and printed by it, are not the
// kernel's: a panic line is one only at the start of a line, with the time
// stamp the kernel gave every line before it.
TEST(ConsoleScanner, ThePanicWordsInSomeoneElsesLineAreNoPanic) {
  ConsoleScanner scanner;
  EXPECT_THAT(scanner.feed("[    1.000000] Linux version 6.1.0-18-amd64\r\n"), IsEmpty());
  EXPECT_THAT(scanner.feed("root@web1:~# echo 'Kernel panic - not syncing: just words'\r\n"), IsEmpty());
  EXPECT_THAT(scanner.feed("Kernel panic - not syncing: just words\r\n"), IsEmpty());
  EXPECT_THAT(scanner.feed("root@web1:~# echo reboot: Restarting system\r\nreboot: Restarting system\r\n"), IsEmpty());
  EXPECT_THAT(scanner.feed("web1 login: [   99.000001] Kernel panic - not syncing: mid-line\r\n"), IsEmpty());
  EXPECT_THAT(kinds(scanner.feed("[   99.000002] Kernel panic - not syncing: sysrq triggered crash\r\n")),
              ElementsAre(Kind::kKernelPanic));
}

// printk.time=0: the kernel stamps no line, and its lines are known by
// where they start alone.
TEST(ConsoleScanner, AKernelThatStampsNoLineIsHeardWithoutStamps) {
  auto events = ConsoleScanner().feed(
      "Run /bin/false as init process\r\nKernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\r\n");
  ASSERT_THAT(kinds(events), ElementsAre(Kind::kKernelPanic));
  EXPECT_EQ(events[0].panic, "Attempted to kill init! exitcode=0x00000100");
}

TEST(ConsoleScanner, APanicLineSaysWhy) {
  // The kernel always writes the colon and a reason; without them it is not
  // its line.
  EXPECT_THAT(ConsoleScanner().feed("Kernel panic - not syncing\n"), IsEmpty());
}

TEST(CrashExcerpt, ShowsThePanicLineAndWhatCameJustBefore) {
  std::string log = "[kiln] typed the passphrase for cryptroot from pass.txt\n" + std::string(kInitPanic) +
                    "[kiln] the guest kernel panicked: Attempted to kill init! exitcode=0x00000100\n";
  EXPECT_EQ(crash_excerpt(log, 2),
            "[    2.906001]   with arguments:\n"
            "[    2.906210]     /bin/false\n"
            "[    2.951234] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100");
}

TEST(CrashExcerpt, WithoutAPanicShowsTheKeyLinesWithoutTerminalEscapes) {
  std::string log =
      "[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39mssh.service\x1b[0m.\r\n"
      "[\x1b[0;1;31mFAILED\x1b[0m] Failed to start \x1b[0;1;39mkiln-agent.service\x1b[0m.\r\n"
      "\r\n"
      "debian login: \n[kiln] the hypervisor was killed by signal 9\n";
  EXPECT_EQ(crash_excerpt(log),
            "[FAILED] Failed to start kiln-agent.service.\n[  OK  ] Started ssh.service.\ndebian login:");
}

TEST(HasKernelPanic, FindsTheKernelsOwnLineOnly) {
  EXPECT_TRUE(has_kernel_panic(std::string("boot\n") + std::string(kInitPanic)));
  EXPECT_FALSE(has_kernel_panic("root@web1:~# echo Kernel panic - not syncing: words\r\n"));
  EXPECT_FALSE(has_kernel_panic(""));
}

TEST(LastKilnLine, IsWhyTheSupervisorEndedTheInstance) {
  EXPECT_EQ(last_kiln_line("boot\n[kiln] the guest kernel panicked: x\nmore\n[kiln] the guest powered off\n"),
            "the guest powered off");
  EXPECT_EQ(last_kiln_line("web1 login: [kiln] not at a line's start\n"), "");
  EXPECT_EQ(last_kiln_line(""), "");
}

TEST(ConsoleScanner, AnUnfinishedLineIsNotHeardUntilItEnds) {
  ConsoleScanner scanner;
  EXPECT_THAT(scanner.feed("KILN-READY 0123456789abcdef hostname=web1"), IsEmpty());
  EXPECT_THAT(kinds(scanner.feed(" mac=none\n")), ElementsAre(Kind::kReady));
}

// A guest that writes without line ends must not grow the supervisor: the
// unended text is dropped past a bound, and what follows is heard again.
TEST(ConsoleScanner, DropsAnEndlessLineAndHearsWhatFollows) {
  ConsoleScanner scanner;
  EXPECT_THAT(scanner.feed(std::string(100000, 'x')), IsEmpty());
  auto events = scanner.feed("\nKILN-READY 0123456789abcdef hostname=web1\n");
  EXPECT_THAT(kinds(events), ElementsAre(Kind::kReady));
}

TEST(ConsoleScanner, OrdinaryConsoleTextIsNoEvent) {
  EXPECT_THAT(ConsoleScanner().feed("Debian GNU/Linux 12 web1 ttyS0\r\n\r\nweb1 login: root\r\nPassword: "), IsEmpty());
}

}  // namespace
}  // namespace kiln
