// What the supervisor hears on a guest's console: the readiness report, a
// passphrase prompt that ends no line, a kernel's panic and restart, however
// the console's bytes are cut into reads.
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
  EXPECT_THAT(kinds(events), ElementsAre(Kind::kKernelPanic, Kind::kKernelRestart));
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
