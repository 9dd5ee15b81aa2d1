// A small bake output directory for the feed tests: the files `kiln bake`
// writes (disk.raw, root.img, vmlinuz, initrd.img, NAME.xl.cfg,
// NAME.libvirt.xml) at a few MiB instead of gigabytes, mostly holes like the
// real ones, and a manifest.json in the bake's schema that lists them (with
// no sha256 for disk.raw, as a bake leaves it by default).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "base/hash.h"
#include "tests/test_support.h"

namespace kiln::testing {

// Bytes that look random but follow from `seed`: two bakes of the same
// name and version are identical, different versions differ.
inline std::string noise(size_t size, const std::string& seed) {
  uint64_t state = std::hash<std::string>{}(seed) | 1;
  std::string out(size, '\0');
  for (char& c : out) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    c = static_cast<char>(state & 0xff);
  }
  return out;
}

// A sparse file of `size` bytes with `data` at `offset`.
inline void write_sparse_file(const std::filesystem::path& path, uint64_t size, uint64_t offset,
                              const std::string& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0 ||
      ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset)) != static_cast<ssize_t>(data.size()))
    throw std::runtime_error("cannot write " + path.string());
  ::close(fd);
}

inline void write_fake_bake(const std::filesystem::path& dir, const std::string& name = "fake",
                            const std::string& version = "1.0", uint64_t disk_mib = 8) {
  std::filesystem::create_directories(dir);
  std::string seed = name + "-" + version;
  write_sparse_file(dir / "disk.raw", disk_mib << 20, 1 << 20, noise(256 << 10, seed + "disk"));
  write_sparse_file(dir / "root.img", 4 << 20, 512 << 10, noise(128 << 10, seed + "root"));
  write_text(dir / "vmlinuz", noise(48 << 10, seed + "kernel"));
  write_text(dir / "initrd.img", std::string(48 << 10, '\0') + noise(48 << 10, seed + "initrd"));
  std::string d = dir.string();
  write_text(dir / (name + ".xl.cfg"),
             "# Xen domain config (xm/xl syntax), written by kiln\nname = \"" + name + "\"\nkernel = \"" + d +
                 "/vmlinuz\"\nramdisk = \"" + d + "/initrd.img\"\nmemory = 512\nvcpus = 1\nroot = \"/dev/xvda1 ro\"\n"
                 "disk = ['file:" + d + "/root.img,xvda1,w']\nvif = ['bridge=xenbr0']\n");
  write_text(dir / (name + ".libvirt.xml"),
             "<domain type='kvm'>\n  <name>" + name + "</name>\n  <memory unit='MiB'>512</memory>\n"
             "  <os firmware='efi'>\n    <type arch='x86_64' machine='q35'>hvm</type>\n  </os>\n  <devices>\n"
             "    <disk type='file' device='disk'>\n      <driver name='qemu' type='raw' />\n"
             "      <source file='" + d + "/disk.raw' />\n      <target dev='vda' bus='virtio' />\n"
             "    </disk>\n  </devices>\n</domain>\n");
  // As `kiln bake` lists them by default: disk.raw's sha256 is left to publish.
  nlohmann::json artifacts = nlohmann::json::array();
  for (std::string file : {std::string("disk.raw"), std::string("root.img"), std::string("vmlinuz"),
                           std::string("initrd.img"), name + ".xl.cfg", name + ".libvirt.xml"}) {
    nlohmann::json artifact = {{"file", file}, {"size", std::filesystem::file_size(dir / file)}};
    if (file != "disk.raw") artifact["sha256"] = *file_digest_hex(dir / file);
    artifacts.push_back(artifact);
  }
  nlohmann::json manifest = {
      {"kiln_version", KILN_VERSION},
      {"recipe", {{"file", name + ".toml"}, {"sha256", std::string(64, 'a')}}},
      {"image",
       {{"name", name},
        {"version", version},
        {"description", "A fake image for the feed tests"},
        {"layout", "gpt"},
        {"size", disk_mib << 20},
        {"kernel", "6.1.0-99-amd64"},
        {"partitions",
         {{{"number", 1}, {"name", "esp"}, {"offset", 1 << 20}, {"size", 1 << 20}},
          {{"number", 2}, {"name", "root"}, {"offset", 2 << 20}, {"size", 4 << 20}}}}}},
      {"build", {{"timestamp", 1700000000}, {"reproducible", true}}},
      {"packages", {{{"name", "base-files"}, {"version", "12.4+deb12u5"}, {"architecture", "amd64"}},
                    {{"name", "bash"}, {"version", "5.2.15-2+b2"}, {"architecture", "amd64"}}}},
      {"artifacts", artifacts}};
  write_text(dir / "manifest.json", manifest.dump(2) + "\n");
}

}  // namespace kiln::testing
