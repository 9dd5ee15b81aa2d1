// FakeRootfs: a small Debian-shaped root filesystem archive for tests that
// must not download anything. It has what kiln's customisation reads and
// edits (account files, skel, hosts, ssh host keys, a networkd unit, dpkg
// status, a kernel and initrd, a time zone) and a static busybox as /bin/sh,
// so in-image `run` steps can execute too.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include "tests/formats/archive_builder.h"
#include "tests/test_support.h"

namespace kiln::testing {

inline constexpr const char* kFakeKernelVersion = "6.1.0-99-amd64";

// `extra` adds entries after the usual ones (hostile ones, say).
inline std::filesystem::path write_fake_rootfs(const std::filesystem::path& path,
                                               const std::function<void(ArchiveBuilder&)>& extra = {}) {
  ArchiveBuilder tar;
  EntryMeta secret{0640, 0, 42};
  for (const char* dir : {"bin", "boot", "dev", "etc", "etc/skel", "etc/ssh", "etc/systemd",
                          "etc/systemd/system", "home", "proc", "root", "sys", "tmp", "usr", "usr/bin",
                          "usr/lib", "usr/lib/systemd", "usr/lib/systemd/system", "usr/sbin", "usr/share",
                          "usr/share/zoneinfo", "usr/share/zoneinfo/Europe", "usr/share/zoneinfo/Etc", "var",
                          "var/lib", "var/lib/dpkg"})
    tar.directory(dir);
  tar.directory("tmp", {01777});
  tar.file("etc/passwd",
           "root:x:0:0:root:/root:/bin/sh\n"
           "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
           "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
  tar.file("etc/group", "root:x:0:\ndaemon:x:1:\nadm:x:4:\nshadow:x:42:\nsudo:x:27:\nusers:x:100:\nnogroup:x:65534:\n");
  tar.file("etc/shadow", "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
           secret);
  tar.file("etc/gshadow", "root:*::\ndaemon:*::\nadm:*::\nshadow:*::\nsudo:*::\nusers:*::\nnogroup:*::\n", secret);
  tar.file("etc/hosts", "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n");
  tar.file("etc/hostname", "fake\n");
  tar.file("etc/machine-id", "0123456789abcdef0123456789abcdef\n", {0444});
  tar.file("etc/skel/.bashrc", "# skel bashrc\n");
  tar.file("etc/skel/.profile", "# skel profile\n");
  tar.file("etc/ssh/ssh_host_ed25519_key", "PRIVATE KEY\n", {0600});
  tar.file("etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA host\n");
  tar.file("etc/ssh/sshd_config", "# config\n");
  tar.file("usr/sbin/sshd", "#!/bin/sh\n", {0755});
  tar.file("usr/bin/sudo", "#!/bin/sh\n", {04755});
  tar.file("bin/bash", "#!/bin/sh\n", {0755});
  tar.file("usr/bin/ssh-keygen", "#!/bin/sh\n", {0755});
  tar.file("usr/lib/systemd/system/systemd-networkd.service",
           "[Unit]\nDescription=Network Configuration\n\n[Service]\nExecStart=/lib/systemd/systemd-networkd\n\n"
           "[Install]\nWantedBy=multi-user.target\nAlso=systemd-networkd.socket\n"
           "Alias=dbus-org.freedesktop.network1.service\n");
  tar.file("usr/lib/systemd/system/systemd-networkd.socket",
           "[Unit]\nDescription=Network Service Netlink Socket\n\n[Socket]\nListenNetlink=route 1361\n\n"
           "[Install]\nWantedBy=sockets.target\n");
  tar.file("usr/lib/systemd/system/multi-user.target", "[Unit]\nDescription=Multi-User System\n");
  tar.file("usr/share/zoneinfo/Europe/Paris", "TZif fake Paris\n");
  tar.file("usr/share/zoneinfo/Etc/UTC", "TZif fake UTC\n");
  tar.file("var/lib/dpkg/status",
           "Package: base-files\nStatus: install ok installed\nArchitecture: amd64\nVersion: 12.4+deb12u5\n\n"
           "Package: removed-thing\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1.0\n\n"
           "Package: busybox-static\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:1.35.0-4\n");
  tar.file(std::string("boot/vmlinuz-") + kFakeKernelVersion, std::string(4096, 'K'));
  tar.file(std::string("boot/initrd.img-") + kFakeKernelVersion, std::string(8192, 'I'));
  tar.file("bin/busybox", read_text("/usr/bin/busybox"), {0755});
  for (const char* tool : {"sh", "echo", "cat", "mkdir", "rm", "ls", "chmod", "true", "false"})
    tar.symlink(std::string("bin/") + tool, "busybox");
  if (extra) extra(tar);
  return tar.write_to(path);
}

}  // namespace kiln::testing
