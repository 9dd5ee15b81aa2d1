// GuestProtocol: what kiln's guest agent and the host say to each other,
// defined once for both sides. The agent is a shell script baked into the
// image (builder/guest_agent.cc builds its text from these words); the host
// is the runtime: the kernel command line (runtime/hypervisor_command.cc),
// the seed disk (runtime/seed_disk.cc) and the supervisor, which waits for
// the readiness report on the console (runtime/supervisor.cc).
//
// Host to guest, at boot:
//   - words on the kernel command line;
//   - the seed disk: an ext2 filesystem labelled KILNSEED that carries the
//     instance's personality in the files listed below.
// Guest to host, once multi-user is up, on every active console:
//   KILN-READY <id> hostname=<name> machine-id=<id> mac=<mac|none> ssh-host-keys=<kiln|own|none>
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace kiln {

// Kernel command line words the guest reads.
inline constexpr std::string_view kInstanceArgument = "kiln.instance=";  // kiln started this boot: wait for the seed
inline constexpr std::string_view kSeedArgument = "kiln.seed=";  // the seed disk's device node, found without udev
inline constexpr std::string_view kSlirpArgument = "kiln.net=slirp";  // UML's user networking: fixed addresses
inline constexpr std::string_view kPowerOffArgument = "kiln.cad=poweroff";  // Ctrl-Alt-Del powers off (UML)

// The seed disk's filesystem label, by which the agent finds it when the
// command line does not name it.
inline constexpr std::string_view kSeedLabel = "KILNSEED";

// The seed disk's files, as paths from the root of its filesystem.
inline constexpr std::string_view kSeedInstanceId = "/kiln/instance-id";  // the id the readiness report echoes
inline constexpr std::string_view kSeedHostname = "/kiln/hostname";  // absent: the guest keeps its own
inline constexpr std::string_view kSeedMachineId = "/kiln/machine-id";
inline constexpr std::string_view kSeedMac = "/kiln/mac";
inline constexpr std::string_view kSeedAuthorizedKeys = "/kiln/authorized_keys";  // root's extra ssh keys
inline constexpr std::string_view kSeedSshHostKeys = "/kiln/ssh";  // a directory of host keys for /etc/ssh
inline constexpr std::string_view kSeedFirstboot = "/kiln/firstboot";  // run once, before readiness
inline constexpr std::string_view kSeedFiles = "/kiln/files";  // a directory: its PATH is copied to /PATH, modes kept

// The readiness report: the keyword starts it, the instance's id follows.
inline constexpr std::string_view kReadyKeyword = "KILN-READY";

// Whose ssh host keys the guest's sshd has, as the report says it.
inline constexpr std::string_view kHostKeysFromKiln = "kiln";  // the instance's, from the seed disk
inline constexpr std::string_view kHostKeysOwn = "own";  // the machine's own
inline constexpr std::string_view kHostKeysNone = "none";  // sshd has none (or is not installed)

// What the guest agent reports with its readiness signal. A field the
// report did not carry is empty.
struct ReadyLine {
  std::string id;
  std::string hostname;
  std::string machine_id;
  std::string mac;  // the first Ethernet interface's, or "none"
  std::string ssh_host_keys;  // one of the kHostKeys… values
  bool operator==(const ReadyLine&) const = default;
};

// The report as the agent prints it (without the line break).
std::string format_ready_line(const ReadyLine& ready);

// The report in one console line (a trailing "\r" allowed), or nothing when
// the line is not one. Console text before the keyword is skipped: the
// guest's kernel may have written on the same line. After the id come
// `name=value` words; a name this reader does not know is skipped, and so
// is a word without "=", so that an agent newer or older than the host
// still reports readiness. A keyword not followed by a space and an id
// (one that has no "=") is not a report.
std::optional<ReadyLine> parse_ready_line(std::string_view line);

}  // namespace kiln
