#include "runtime/kvm_probe.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <array>
#include <chrono>

#include <nlohmann/json.hpp>

#include "base/files.h"
#include "base/subprocess.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

// A boot sector that prints "KVM-OK" on COM1 and halts:
//   cld; xor ax,ax; mov ds,ax; mov si,msg; mov dx,0x3f8
//   next: lodsb; test al,al; jz done; out dx,al; jmp next
//   done: cli; hlt; jmp done
//   msg: db "KVM-OK", 10, 0
constexpr std::array<unsigned char, 31> kProbeCode = {
    0xFC, 0x31, 0xC0, 0x8E, 0xD8, 0xBE, 0x17, 0x7C, 0xBA, 0xF8, 0x03, 0xAC, 0x84, 0xC0, 0x74, 0x03,
    0xEE, 0xEB, 0xF8, 0xFA, 0xF4, 0xEB, 0xFC, 'K',  'V',  'M',  '-',  'O',  'K',  '\n', 0x00};

std::string fingerprint(const std::string& qemu) {
  utsname host{};
  ::uname(&host);
  auto identity = program_identity(qemu);
  return fmt::format("{} | {} {}", identity ? *identity : "unknown", host.release, host.version);
}

}  // namespace

std::string kvm_probe_boot_sector() {
  std::string sector(512, '\0');
  std::copy(kProbeCode.begin(), kProbeCode.end(), sector.begin());
  sector[510] = static_cast<char>(0x55);
  sector[511] = static_cast<char>(0xAA);
  return sector;
}

KvmVerdict probe_accelerator(const fs::path& dir, const std::string& qemu, std::string_view accel) {
  if (accel == "kvm" && ::access("/dev/kvm", R_OK | W_OK) != 0)
    return {false, "/dev/kvm is missing or not accessible"};
  fs::path image = dir / "kvm-probe.img";
  if (!write_file_atomic(image, kvm_probe_boot_sector())) return {false, "cannot write the probe image"};
  Command command;
  // -cpu host, as real KVM boots use: that is what fails on broken hosts.
  command.argv = {qemu, "-machine", fmt::format("pc,accel={}", accel), "-cpu", accel == "kvm" ? "host" : "max",
                  "-m", "16", "-nodefaults", "-no-user-config",
                  "-display", "none", "-serial", "stdio", "-drive",
                  "file=" + image.string() + ",format=raw,if=ide", "-no-reboot"};
  command.timeout = std::chrono::seconds(4);
  command.on_stdout_line = [](std::string_view line) { return line.find(kKvmProbeWord) == std::string_view::npos; };
  auto started = std::chrono::steady_clock::now();
  auto done = run(command);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  fs::remove(image);
  std::string name = accel == "kvm" ? "KVM" : std::string(accel);
  if (done && done->stopped_early) return {true, fmt::format("a probe guest ran under {}", name), seconds};
  if (done) return {false, fmt::format("qemu with {} exited without running the probe guest", name), seconds};
  if (done.error().message.find("timed out") != std::string::npos)
    return {false, fmt::format("qemu with {} started but the probe guest did not run within 4 s", name), seconds};
  std::string detail = done.error().detail;
  auto newline = detail.find('\n');
  return {false,
          fmt::format("qemu with {} failed: {}", name, detail.empty() ? done.error().message : detail.substr(0, newline)),
          seconds};
}

KvmVerdict probe_kvm(const fs::path& cache_dir, const std::string& qemu) {
  std::error_code ec;
  fs::create_directories(cache_dir, ec);
  fs::path cache = cache_dir / "kvm-probe.json";
  std::string key = fingerprint(qemu);
  if (auto text = read_file(cache)) {
    auto json = nlohmann::json::parse(*text, nullptr, false);
    if (!json.is_discarded() && json.value("key", "") == key)
      return {json.value("works", false), json.value("reason", ""), 0, true};
  }
  KvmVerdict verdict = probe_accelerator(cache_dir, qemu, "kvm");
  nlohmann::json json = {{"key", key}, {"works", verdict.works}, {"reason", verdict.reason}};
  (void)write_file_atomic(cache, json.dump(2) + "\n");
  return verdict;
}

}  // namespace kiln
