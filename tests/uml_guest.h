// UmlGuest: a shell script run as init of a User-Mode Linux kernel, to check
// images with a real kernel's device-mapper and dm-crypt (the build host has
// neither) in a few seconds. The guest's root is the host's / through
// hostfs, read-only; /dev, /proc, /sys and /run are its own. dm-mod,
// dm-crypt and the ciphers load from the UML package's modules. Disks are
// attached read-only as /dev/ubda, /dev/ubdb, ...
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "tests/test_support.h"

namespace kiln::testing {

inline constexpr const char* kUmlModules = "/usr/lib/uml/modules";

// The UML modules' version directory, or "" when UML is not installed.
inline std::string uml_kernel_version() {
  std::error_code ec;
  if (run_program({"sh", "-c", "command -v linux"}).exit_code != 0) return {};
  for (const auto& entry : std::filesystem::directory_iterator(kUmlModules, ec))
    if (std::filesystem::exists(entry.path() / "kernel/drivers/md/dm-crypt.ko")) return entry.path().filename();
  return {};
}

struct UmlRun {
  bool available = false;  // user-mode-linux (with dm-crypt) is installed
  bool finished = false;   // the script ran to its end
  std::string console;     // everything the guest printed
};

// Runs `script` (sh) in the guest with `disks` attached; `scratch` holds the
// files the guest needs from the host.
inline UmlRun run_in_uml(const std::filesystem::path& scratch, const std::vector<std::filesystem::path>& disks,
                         const std::string& script) {
  std::string version = uml_kernel_version();
  if (version.empty()) return {};  // not available
  // modprobe wants DIR/lib/modules/VERSION.
  auto modules = scratch / "uml-modules/lib/modules";
  std::filesystem::create_directories(modules);
  std::filesystem::remove(modules / version);
  std::filesystem::create_directory_symlink(std::filesystem::path(kUmlModules) / version, modules / version);
  auto init = scratch / "uml-init.sh";
  write_text(init,
             "#!/bin/sh\n"
             "mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs run /run\n"
             "for m in cbc ecb xts sha256_generic sha512_generic hmac authenc essiv dm-crypt; do\n"
             "  modprobe -d " + (scratch / "uml-modules").string() + " -S " + version + " $m\n"
             "done\n" + script + "\necho UML-END\npoweroff -f\n");
  std::filesystem::permissions(init, std::filesystem::perms(0755));
  std::vector<std::string> argv = {"timeout", "120", "linux"};
  for (size_t i = 0; i < disks.size(); ++i)
    argv.push_back("ubd" + std::to_string(i) + "r=" + disks[i].string());
  argv.insert(argv.end(), {"root=/dev/root", "rootfstype=hostfs", "rootflags=/", "ro", "init=" + init.string(),
                           "mem=512M", "con0=fd:0,fd:1", "con=null"});
  ProcessResult result = run_program(argv);
  return {true, result.out.find("UML-END") != std::string::npos, result.out + result.err};
}

}  // namespace kiln::testing
