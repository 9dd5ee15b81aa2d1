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
//   KILN-READY <id> hostname=<name> machine-id=<id> mac=<mac|none> ssh-host-keys=<kiln|own|none> exec=<1|none>
//
// After boot, the exec channel: a byte stream between the instance's
// supervisor on the host and kiln's exec agent (guest/exec_agent.cc, a
// static binary baked into the image) that needs no network: a virtio-serial
// port under qemu, a serial line (ssl1) on a host descriptor under UML. It
// carries length-prefixed frames; every frame belongs to a session (one
// `kiln exec`), so several commands run at once; the frame layout is below.
// Its codec (formats/image/guest_channel.cc) uses nothing but
// the standard library and nlohmann/json, because the agent links it
// statically.
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln {

// Kernel command line words the guest reads.
inline constexpr std::string_view kInstanceArgument = "kiln.instance=";  // kiln started this boot: wait for the seed
inline constexpr std::string_view kSeedArgument = "kiln.seed=";  // the seed disk's device node, found without udev
inline constexpr std::string_view kSlirpArgument = "kiln.net=slirp";  // UML's user networking: fixed addresses
inline constexpr std::string_view kNoNicsArgument = "kiln.net=none";  // no NIC: the network daemons stay down
inline constexpr std::string_view kPowerOffArgument = "kiln.cad=poweroff";  // Ctrl-Alt-Del powers off (UML)
inline constexpr std::string_view kAgentArgument = "kiln.agent=";  // the exec channel's device node in the guest

// Made by the guest agent at boot where the command line has kNoNicsArgument;
// the network daemons' condition (builder/system_setup.cc). The agent of an
// instance resumed from a snapshot removes it once its NICs are in.
inline constexpr std::string_view kNoNicsFlag = "/run/kiln/no-nics";

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
inline constexpr std::string_view kSeedNetwork = "/kiln/network";  // systemd-networkd files of NICs with static addresses
inline constexpr std::string_view kSeedFiles = "/kiln/files";  // a directory: its PATH is copied to /PATH, modes kept
inline constexpr std::string_view kSeedHosts = "/kiln/hosts";  // /etc/hosts lines naming the socket networks' instances

// The guest agent script and its command that puts /etc/hosts lines (its
// input) between kiln's marks in /etc/hosts, replacing what was there.
inline constexpr std::string_view kAgentScriptPath = "/usr/lib/kiln/kiln-agent";
inline constexpr std::string_view kAgentHostsCommand = "hosts";
// What kiln asks the agent (/usr/lib/kiln/kiln-agent ACTION) over the exec
// channel around a snapshot: before it is saved, to sync and let go of the
// seed disk; after an instance resumes from it, to become that instance
// (ACTION ENTROPY-HEX), then to take the host's clock and report ready with
// its id (ACTION UNIX-SECONDS.NANOSECONDS): a second, short call, so that
// the time it carries is not made stale by the first one's work.
inline constexpr std::string_view kAgentQuiesceCommand = "quiesce";
inline constexpr std::string_view kAgentResumeCommand = "resume";
inline constexpr std::string_view kAgentReadyAtCommand = "ready-at";

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
  std::string exec;  // the exec agent's protocol version, "none" or "" (an older image)
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

// ---- The exec channel ----

// The version this kiln speaks; the agent says its own in kHello and in the
// readiness report (exec=N).
inline constexpr int kExecProtocolVersion = 1;

// The virtio-serial port's name under qemu (/dev/virtio-ports/NAME).
inline constexpr std::string_view kAgentPortName = "org.kiln.exec.0";

// Booted through firmware, a guest's kernel command line is its own boot
// loader's, without kiln's words. qemu then also gives kiln.agent=VALUE as
// an SMBIOS OEM string (type 11), which the agent reads from the DMI table
// (/sys/firmware/dmi/tables/DMI, there from early boot, no module needed).
inline constexpr std::string_view kDmiTablePath = "/sys/firmware/dmi/tables/DMI";
// VALUE of the first OEM string kiln.agent=VALUE in a raw DMI table.
std::optional<std::string> agent_channel_from_dmi(std::string_view table);

// Each frame: a 4-byte payload length, a 4-byte session number (both
// big-endian), a 1-byte type, then the payload. Session 0 is the channel's
// own (kHello, kAck); the host numbers the others from 1.
//
// The agent speaks first: kHello when it has the channel, and again after a
// restart, when the host drops what it had under way. Its kHello names the
// agent's run, and says when it replies to the host's: a reply from the
// run that greeted already is no restart, and the host keeps what is under
// way. Nothing goes toward
// the agent before that, because UML's serial line echoes and rewrites
// what arrives before the agent has made it raw.
//
// The host keeps at most a window of bytes on the channel that the agent
// has not acknowledged (kAck). UML's serial line stops reading its host
// descriptor for good once its buffers have filled (Debian 12's linux.uml):
// a window smaller than the line's 4 KiB never fills them.
enum class FrameType : uint8_t {
  kHello = 1,   // both ways, session 0: {"version": N[, "run": ID, "reply": true]}; the agent sends it when it has the channel and answers the host's
  kOpen = 2,    // host to agent: an ExecRequest (JSON); starts the session's command
  kStdin = 3,   // host to agent: input bytes; an empty payload ends the input
  kResize = 4,  // host to agent: {"rows": R, "cols": C}, for a command on a pty
  kSignal = 5,  // host to agent: {"signal": N}, sent to the command's process group
  kClose = 6,   // host to agent: the client is gone; the agent kills the process group and ends the session
  kStdout = 7,  // agent to host: output bytes
  kStderr = 8,  // agent to host: error output bytes (none on a pty, which merges them)
  kExit = 9,    // agent to host: an ExecExit (JSON), after all output; ends the session
  kError = 10,  // agent to host: {"message": M}, the command could not be started; ends the session
  kAck = 11,    // agent to host, session 0: a 4-byte big-endian count of channel bytes the agent has read
};

// The whole kAck frame for `bytes` read.
std::string encode_ack(uint32_t bytes);
// The count a kAck carries, or nothing when its payload is not 4 bytes.
std::optional<uint32_t> decode_ack(std::string_view payload);

inline constexpr size_t kFrameHeaderSize = 9;
// The most one frame carries: big enough to move data fast, small enough
// that one session's output never holds up the others for long.
inline constexpr uint32_t kMaxFramePayload = 256 * 1024;

struct Frame {
  uint32_t session = 0;
  FrameType type = FrameType::kHello;
  std::string payload;
  bool operator==(const Frame&) const = default;
};

std::string encode_frame(uint32_t session, FrameType type, std::string_view payload);

// Cuts a byte stream into frames, whatever pieces it arrives in. A frame of
// an unknown type or over kMaxFramePayload is an error, after which the
// stream cannot be trusted to be in step: the decoder stays failed.
class FrameDecoder {
 public:
  void feed(std::string_view bytes);
  // The next complete frame, nothing while one is incomplete, or the error.
  std::expected<std::optional<Frame>, std::string> next();
  size_t buffered() const { return buffer_.size() - start_; }

 private:
  std::string buffer_;
  size_t start_ = 0;
  std::string error_;
};

// What to run, and how (kOpen).
struct ExecRequest {
  std::vector<std::string> argv;  // argv[0] is looked up on PATH
  std::vector<std::string> env;   // NAME=VALUE, over the user's login environment
  std::string user = "root";      // a name from the guest's /etc/passwd, or a number
  std::string workdir;            // "": the user's home directory
  bool tty = false;               // on a pty, stdout and stderr merged
  uint16_t rows = 24, cols = 80;  // the pty's size
  uint32_t timeout_seconds = 0;   // 0: none; then the process group is killed
  bool operator==(const ExecRequest&) const = default;
};

// How the command ended (kExit).
struct ExecExit {
  int code = 0;     // its exit code, when it exited
  int signal = 0;   // the signal that killed it, else 0
  bool timed_out = false;
  bool operator==(const ExecExit&) const = default;
};

std::string encode_exec_request(const ExecRequest& request);
std::expected<ExecRequest, std::string> decode_exec_request(std::string_view payload);
std::string encode_exec_exit(const ExecExit& exit);
std::expected<ExecExit, std::string> decode_exec_exit(std::string_view payload);

// The exit code a shell would give: the command's own, or 128 + the signal.
int shell_exit_code(const ExecExit& exit);

}  // namespace kiln
