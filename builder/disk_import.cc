#include "builder/disk_import.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/architecture.h"
#include "base/files.h"
#include "base/hash.h"
#include "base/size.h"
#include "base/stale_temps.h"
#include "base/subprocess.h"
#include "builder/baker.h"
#include "builder/bundle_import.h"
#include "builder/guest_agent.h"
#include "builder/kernel_files.h"
#include "builder/storage_setup.h"
#include "builder/systemd_units.h"
#include "crypto/luks.h"
#include "crypto/sector_cipher.h"
#include "crypto/volume_encryption.h"
#include "formats/disk/lvm_metadata.h"
#include "formats/disk/partition_table.h"
#include "formats/disk/swap_area.h"
#include "formats/domain/xen_config.h"
#include "formats/ext4/ext4_allocation.h"
#include "formats/ext4/ext4_image.h"
#include "formats/tree/dpkg_status.h"
#include "formats/tree/rootfs_tree.h"
#include "formats/tree/tar_reader.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct SourceFormat {
  std::string format;  // qemu-img's name: "raw", "qcow2", "vmdk", "vhdx"...
  uint64_t virtual_size = 0;
  std::string backing_file;  // a qcow2's (or vmdk's) backing file, "" for none
};

Result<SourceFormat> probe_format(const fs::path& source) {
  Command info;
  info.argv = {"qemu-img", "info", "--output=json", source.string()};
  auto done = system_runner().run(info);
  if (!done)
    return fail(ErrorKind::kBadInput, "{}: not a disk image qemu-img can read: {}", source.string(),
                done.error().message);
  auto json = nlohmann::json::parse(done->out, nullptr, false);
  if (!json.is_object() || !json.contains("format") || !json.contains("virtual-size"))
    return fail(ErrorKind::kBadInput, "{}: qemu-img info said nothing of its format", source.string());
  SourceFormat format{json["format"].get<std::string>(), json["virtual-size"].get<uint64_t>(), ""};
  if (json.contains("backing-filename") && json["backing-filename"].is_string())
    format.backing_file = json["backing-filename"].get<std::string>();
  return format;
}

// qemu-img's own consistency check, for the formats that have one: a
// truncated qcow2 converts "successfully", its lost clusters read as zeros.
// Exit 1: the check could not finish; 2: corruption; 3: leaked clusters
// only, harmless; 63: the format has no check.
Result<> check_consistency(const fs::path& source, const SourceFormat& format) {
  if (format.format == "raw") return {};
  Command check;
  check.argv = {"qemu-img", "check", "-f", format.format, source.string()};
  check.ok_exit_codes = {3, 63};
  auto done = system_runner().run(check);
  if (done) return {};
  return std::unexpected(Error{ErrorKind::kBadInput,
                               fmt::format("{}: damaged or truncated (qemu-img check found errors in the {})",
                                           source.string(), format.format),
                               {}, done.error().detail});
}

// One place a filesystem may be: a partition, the whole disk, or a
// logical volume or LUKS volume on one of those.
struct Candidate {
  int number = 0;  // the partition it is on; 0: the whole disk
  uint64_t offset = 0;  // in `file`
  uint64_t size = 0;
  std::string type;  // the partition table's type
  fs::path file;     // disk.raw, or the plaintext of the LUKS volume it is in
  std::string kind;  // "ext4", "LUKS", "LVM", or "" for anything else
  std::string uuid;
  std::string label;
  bool os_release = false;
  std::string fstab;
  // Inside a LUKS volume opened with the passphrase (an index into the
  // opened volumes), a logical volume (of a volume group), or neither: -1.
  int luks = -1;
  int lvm = -1;
  std::string group;    // the logical volume's volume group
  std::string volume;   // and its name
  std::string problem;  // why kiln did not look inside (a LUKS volume with no passphrase, an LV it cannot place)

  std::string partition() const { return number == 0 ? "the whole disk" : fmt::format("partition {}", number); }
  std::string where() const {
    std::string on = partition();
    if (luks >= 0) on = "the LUKS volume on " + on;
    return lvm >= 0 ? fmt::format("logical volume {}/{} on {}", group, volume, on) : on;
  }
};

Candidate whole_file(const fs::path& file, uint64_t size) {
  Candidate c;
  c.size = size;
  c.file = file;
  return c;
}

bool has(Ext4Image& fs, std::string_view path) {
  auto found = fs.stat(path);
  return found && found->has_value();
}

Result<Candidate> inspect(Candidate candidate) {
  const fs::path& disk = candidate.file;
  KILN_ASSIGN(bool luks, has_luks_header(disk, candidate.offset));
  if (luks) {
    candidate.kind = "LUKS";
    return candidate;
  }
  KILN_ASSIGN(bool lvm, has_lvm_label(disk, candidate.offset));
  if (lvm) {
    candidate.kind = "LVM";
    return candidate;
  }
  auto opened = Ext4Image::open(disk, candidate.offset, false);
  if (!opened) return candidate;
  Ext4Image& image = *opened;
  Ext4Usage usage = image.usage();
  candidate.kind = usage.type;
  candidate.uuid = usage.uuid;
  candidate.label = usage.label;
  candidate.os_release = has(image, "/etc/os-release") || has(image, "/usr/lib/os-release");
  if (has(image, "/etc/fstab")) {
    auto fstab = image.read_file("/etc/fstab");
    if (fstab) candidate.fstab = *fstab;
  }
  return candidate;
}

// A line of fstab or crypttab split at blanks.
std::vector<std::string_view> whitespace_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  for (size_t at = 0; at < line.size();) {
    at = line.find_first_not_of(" \t", at);
    if (at == std::string_view::npos) break;
    size_t stop = line.find_first_of(" \t", at);
    fields.push_back(line.substr(at, stop == std::string_view::npos ? std::string_view::npos : stop - at));
    at = stop == std::string_view::npos ? line.size() : stop;
  }
  return fields;
}

// fstab's device for `mountpoint`: "UUID=...", "LABEL=...", "/dev/..."; "" for none.
std::string fstab_device(std::string_view fstab, std::string_view mountpoint) {
  while (!fstab.empty()) {
    size_t end = fstab.find('\n');
    std::string_view line = fstab.substr(0, end);
    fstab.remove_prefix(end == std::string_view::npos ? fstab.size() : end + 1);
    std::vector<std::string_view> fields = whitespace_fields(line);
    if (fields.size() >= 2 && !fields[0].starts_with('#') && fields[1] == mountpoint) return std::string(fields[0]);
  }
  return {};
}

bool same_uuid(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// The candidate fstab's `device` names, if kiln can tell.
const Candidate* resolve(const std::vector<Candidate>& candidates, std::string_view device) {
  std::string_view uuid, label;
  if (device.starts_with("UUID=")) uuid = device.substr(5);
  if (device.starts_with("/dev/disk/by-uuid/")) uuid = device.substr(18);
  if (device.starts_with("LABEL=")) label = device.substr(6);
  if (device.starts_with("/dev/disk/by-label/")) label = device.substr(19);
  for (const Candidate& c : candidates) {
    if (c.uuid.empty()) continue;
    if ((!uuid.empty() && same_uuid(c.uuid, uuid)) || (!label.empty() && c.label == label)) return &c;
  }
  return nullptr;
}

std::string listing(const std::vector<Candidate>& candidates) {
  std::string out;
  for (const Candidate& c : candidates)
    out += fmt::format("  {}: {}{}{}{}\n", c.where(), c.kind.empty() ? "no filesystem kiln reads" : c.kind,
                       c.type.empty() || c.lvm >= 0 || c.luks >= 0 ? "" : ", type " + c.type,
                       c.os_release ? ", has /etc/os-release" : "", c.problem.empty() ? "" : " (" + c.problem + ")");
  return out;
}

Error not_found(const fs::path& source, const std::vector<Candidate>& candidates, std::string why) {
  bool locked = std::ranges::any_of(candidates, [](const Candidate& c) { return c.kind == "LUKS" && !c.problem.empty(); });
  if (locked) why += "; a LUKS volume is on it: give --luks-passphrase-file to look inside";
  return Error{ErrorKind::kBadInput, fmt::format("{}: {}", source.string(), why), {}, listing(candidates)};
}

struct FoundRoot {
  const Candidate* root = nullptr;
  std::string how;
};

Result<FoundRoot> find_root(const fs::path& source, const std::vector<Candidate>& candidates) {
  for (const Candidate& c : candidates)
    for (const Architecture& arch : architectures())
      if (c.type == arch.root_partition_type && !c.uuid.empty())
        return FoundRoot{&c, fmt::format("{} (GPT type of an {} root)", c.where(), arch.dpkg)};
  std::vector<const Candidate*> systems;
  for (const Candidate& c : candidates)
    if (c.os_release) systems.push_back(&c);
  if (systems.size() == 1) return FoundRoot{systems.front(), systems.front()->where() + " (it has /etc/os-release)"};
  for (const Candidate* c : systems)
    if (resolve(candidates, fstab_device(c->fstab, "/")) == c)
      return FoundRoot{c, c->where() + " (its /etc/fstab mounts it on /)"};
  if (candidates.size() == 1 && candidates.front().number == 0 && candidates.front().kind.empty())
    return std::unexpected(not_found(source, candidates,
                                     "not a disk image kiln reads (no partition table, no ext2/3/4 filesystem), nor "
                                     "an archive (a jailtime-style bundle: a tar of disk images and a Xen config)"));
  if (systems.empty())
    return std::unexpected(not_found(source, candidates, "no root filesystem in it (ext2, ext3 or ext4 with /etc/os-release)"));
  return std::unexpected(not_found(source, candidates,
                                   "more than one filesystem with /etc/os-release, and none that its own fstab mounts on /"));
}

// The image's architecture, from its shell's ELF header.
Result<const Architecture*> architecture_of(Ext4Image& root, const fs::path& source) {
  for (std::string_view shell : {"/bin/sh", "/usr/bin/sh", "/bin/bash", "/usr/bin/bash"}) {
    auto bytes = root.read_file(shell);
    if (!bytes || bytes->size() < 20 || !bytes->starts_with("\x7f" "ELF")) continue;
    uint16_t machine = static_cast<uint8_t>((*bytes)[18]) | static_cast<uint16_t>(static_cast<uint8_t>((*bytes)[19])) << 8;
    if (const Architecture* arch = find_architecture_of_elf(machine)) return arch;
    return fail(ErrorKind::kBadInput, "{}: its {} is for ELF machine {}, an architecture kiln does not boot ({})",
                source.string(), shell, machine, architecture_choices());
  }
  return fail(ErrorKind::kBadInput, "{}: its root has no /bin/sh to tell its architecture by", source.string());
}

// Takes the kernel from the root's /boot or from the /boot partition.
Result<std::string> take_kernel(const fs::path& source, const std::vector<Candidate>& candidates,
                                const Candidate& root, const fs::path& dir) {
  std::vector<std::pair<const Candidate*, std::string>> places = {{&root, "/boot"}};
  if (const Candidate* boot = resolve(candidates, fstab_device(root.fstab, "/boot")); boot && boot != &root)
    places.push_back({boot, "/"});
  for (const Candidate& c : candidates)
    if (&c != &root && !c.uuid.empty()) places.push_back({&c, "/"});
  for (const auto& [where, dir_inside] : places) {
    KILN_ASSIGN(Ext4Image fs, Ext4Image::open(where->file, where->offset, false));
    KILN_ASSIGN(auto kernel, find_kernel(fs, dir_inside));
    if (!kernel) continue;
    KILN_TRY(extract_kernel(fs, *kernel, dir));
    return kernel->version;
  }
  return std::unexpected(not_found(source, candidates,
                                   "no kernel (vmlinuz-*) in the root's /boot nor on a boot partition: kiln boots an "
                                   "image with its own kernel and initramfs"));
}

// A LUKS volume on the disk opened with the passphrase: its data decrypted
// into a private file in the staging directory, removed before the output
// is installed.
struct OpenedLuks {
  LuksRegion region;
  UnlockedLuks unlocked;
  fs::path plaintext;
  uint64_t size = 0;  // of the data after the header
};

// What the disk's candidates were opened into.
struct Containers {
  std::vector<OpenedLuks> luks;
  std::vector<LvmVolumeGroup> groups;
};

Result<> create_private_file(const fs::path& file, uint64_t size) {
  KILN_ASSIGN(UniqueFd fd, open_file(file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) return fail_errno("cannot size", file.string(), errno);
  return {};
}

Result<Candidate> open_luks(const Candidate& c, const Secret& passphrase, const fs::path& source,
                            const fs::path& staging, Containers& out, Reporter& reporter) {
  LuksRegion region{c.file, c.offset, c.size, fmt::format("{} {}", source.string(), c.where())};
  KILN_ASSIGN(UnlockedLuks unlocked, luks_unlock(region, passphrase));
  if (!SectorCipher::supports(unlocked.cipher))
    return fail(ErrorKind::kBadInput, "{}: encrypted with {}, which kiln does not decrypt", region.description,
                unlocked.cipher);
  if (unlocked.data_offset >= c.size)
    return fail(ErrorKind::kBadInput, "{}: its LUKS header puts the data past the volume's end", region.description);
  uint64_t size = (c.size - unlocked.data_offset) / unlocked.sector_size * unlocked.sector_size;
  fs::path plaintext = staging / fmt::format("luks{}.plain", out.luks.size() + 1);
  KILN_TRY(create_private_file(plaintext, size));
  reporter.step("decrypt", region.description);
  EncryptionJob job{plaintext, 0, c.file, c.offset + unlocked.data_offset, unlocked.cipher, unlocked.sector_size,
                    [&](uint64_t done, uint64_t total) { reporter.progress(done, total); }};
  const std::vector<ByteRange> all = {{0, size}};
  KILN_TRY(decrypt_ranges(job, all, unlocked.volume_key));
  reporter.done(fmt::format("{}, keyslot {}", format_size(size), unlocked.keyslot));
  Candidate inner = whole_file(plaintext, size);
  inner.number = c.number;
  inner.type = c.type;
  inner.luks = static_cast<int>(out.luks.size());
  out.luks.push_back({std::move(region), std::move(unlocked), plaintext, size});
  return inspect(std::move(inner));
}

Result<std::vector<Candidate>> open_lvm(const Candidate& c, const fs::path& source, Containers& out) {
  KILN_ASSIGN(LvmVolumeGroup group,
              read_lvm_physical_volume(c.file, c.offset, c.size, fmt::format("{} {}", source.string(), c.where())));
  std::vector<Candidate> volumes;
  for (const LvmLogicalVolume& lv : group.logical_volumes) {
    if (!lv.visible) continue;
    Candidate inner = whole_file(c.file, 0);
    inner.number = c.number;
    inner.luks = c.luks;
    inner.lvm = static_cast<int>(out.groups.size());
    inner.group = group.name;
    inner.volume = lv.name;
    auto range = lvm_volume_range(group, lv);
    if (!range) {
      inner.problem = range.error().message;
      volumes.push_back(std::move(inner));
      continue;
    }
    inner.offset = c.offset + range->offset;
    inner.size = range->length;
    KILN_ASSIGN(inner, inspect(std::move(inner)));
    volumes.push_back(std::move(inner));
  }
  out.groups.push_back(std::move(group));
  return volumes;
}

// Looks into each LUKS volume (when a passphrase is given) and each LVM
// physical volume among `candidates`, adding what they hold as candidates.
Result<Containers> open_containers(std::vector<Candidate>& candidates, const Secret* passphrase,
                                   const fs::path& source, const fs::path& staging, Reporter& reporter) {
  Containers out;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const Candidate c = candidates[i];  // a copy: the vector grows
    if (c.kind == "LUKS" && !passphrase) {
      candidates[i].problem = "locked: no passphrase given";
    } else if (c.kind == "LUKS") {
      KILN_ASSIGN(Candidate inner, open_luks(c, *passphrase, source, staging, out, reporter));
      candidates.push_back(std::move(inner));
    } else if (c.kind == "LVM") {
      KILN_ASSIGN(std::vector<Candidate> volumes, open_lvm(c, source, out));
      for (Candidate& v : volumes) candidates.push_back(std::move(v));
    }
  }
  if (passphrase && out.luks.empty())
    return fail(ErrorKind::kBadInput, "{}: no LUKS volume on it for --luks-passphrase-file to open", source.string());
  return out;
}

// Writes the root's changes (its used blocks) back into the LUKS volume it
// was decrypted from, and removes every plaintext.
Result<> close_containers(const Containers& containers, const Candidate& root, Reporter& reporter) {
  if (root.luks >= 0) {
    const OpenedLuks& v = containers.luks[static_cast<size_t>(root.luks)];
    reporter.step("encrypt", "the root's blocks back into " + v.region.description);
    KILN_ASSIGN(std::vector<ByteRange> used, ext4_used_ranges(v.plaintext, root.offset));
    for (ByteRange& range : used) range.offset += root.offset;
    merge_ranges(used, v.unlocked.sector_size);
    if (!used.empty() && used.back().offset + used.back().length > v.size)
      used.back().length = v.size - used.back().offset;
    EncryptionJob job{v.plaintext, 0, v.region.image, v.region.offset + v.unlocked.data_offset, v.unlocked.cipher,
                      v.unlocked.sector_size, [&](uint64_t done, uint64_t total) { reporter.progress(done, total); }};
    KILN_ASSIGN(uint64_t bytes, encrypt_ranges(job, used, v.unlocked.volume_key));
    reporter.done(format_size(bytes));
  }
  for (const OpenedLuks& v : containers.luks) {
    std::error_code ec;
    if (!fs::remove(v.plaintext, ec) && ec) return fail_errno("cannot remove", v.plaintext.string(), ec.value());
  }
  return {};
}

// The name the root's /etc/crypttab gives the LUKS volume `uuid`; "" if none.
std::string crypttab_name(std::string_view crypttab, std::string_view uuid) {
  while (!crypttab.empty()) {
    size_t end = crypttab.find('\n');
    std::string_view line = crypttab.substr(0, end);
    crypttab.remove_prefix(end == std::string_view::npos ? crypttab.size() : end + 1);
    std::vector<std::string_view> fields = whitespace_fields(line);
    if (fields.size() < 2 || fields[0].starts_with('#')) continue;
    std::string_view device = fields[1];
    if (device.starts_with("UUID=")) device.remove_prefix(5);
    if (device.starts_with("/dev/disk/by-uuid/")) device.remove_prefix(18);
    if (same_uuid(device, uuid)) return std::string(fields[0]);
  }
  return {};
}

// The manifest's account of what the root is in: its volume group (the
// kernel's root= is then the volume's device-mapper path, which the image's
// initramfs activates) and its LUKS volume (which the image's initramfs asks
// the passphrase for; `kiln boot --luks-passphrase-file` types it).
void describe_containers(const Containers& containers, const Candidate& root, std::string_view crypttab,
                         ImageManifest& m) {
  if (root.lvm >= 0) {
    const LvmVolumeGroup& group = containers.groups[static_cast<size_t>(root.lvm)];
    const LvmPhysicalVolume* pv = group.find_physical_volume(group.this_volume);
    m.layout = "lvm";
    m.lvm = ManifestLvm{group.name, group.uuid, pv ? pv->uuid : "", group.extent_size, pv ? pv->pe_count : 0,
                        pv ? pv->pe_start : 0};
    m.root_device = lvm_mapper_path(group.name, root.volume);
    m.kernel_cmdline.replace(0, m.kernel_cmdline.find(' '), "root=" + m.root_device);
  }
  if (root.luks >= 0) {
    const OpenedLuks& v = containers.luks[static_cast<size_t>(root.luks)];
    const UnlockedLuks& u = v.unlocked;
    m.encryption = ManifestEncryption{u.version, u.cipher, static_cast<uint32_t>(u.volume_key.size() * 8),
                                      u.sector_size, u.data_offset, u.active_keyslots, v.size, "imported",
                                      crypttab_name(crypttab, u.uuid),
                                      u.uuid};
  }
}

// What a bundle adds to the import of its root image.
struct BundleParts {
  std::string config;  // the Xen config's path in the bundle
  DomainSpec spec;     // as parsed
  // The root disk, then the swap areas; each file set once it is staged.
  std::vector<ManifestImportedDisk> disks;
  std::string how;  // why that disk is the root
};

Result<ImportResult> import_converted(const ImportRequest& request, const SourceFormat& format,
                                      const std::string& source_sha256, TempDir staged, const fs::path& output,
                                      const BundleParts* bundle, Reporter& reporter);

// The file's name up to its first '.'.
std::string default_name(const fs::path& source) {
  std::string name = source.filename().string();
  return name.substr(0, name.find('.'));
}

// -o as an absolute path, refused before anything is written when it is
// something other than a kiln output.
Result<fs::path> output_dir_of(const fs::path& dir) {
  fs::path output = fs::absolute(dir).lexically_normal();
  if (output.filename().empty()) output = output.parent_path();
  KILN_TRY(check_output_dir(output));
  return output;
}

// A staging directory in `parent`, after removing what a killed import
// left there under the same prefix.
Result<TempDir> staging_in(const fs::path& parent, const std::string& prefix) {
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) return fail_errno("cannot create", parent.string(), ec.value());
  remove_stale_temp_dirs(parent, prefix);
  return create_tagged_temp_dir(parent, prefix);
}

// What goes wrong once the source is staged is about the source's content:
// said so, not about the staging copy it was found in.
Error about_source(Error error, const fs::path& staging, const fs::path& source) {
  const std::string prefix = staging.string() + "/";
  for (size_t at = error.message.find(prefix); at != std::string::npos; at = error.message.find(prefix))
    error.message.erase(at, prefix.size());
  if (!error.message.starts_with(source.string()) && !error.where.file.starts_with(source.string()))
    std::move(error).with_context(source.string());  // in place: assigning it to itself would empty it
  return error;
}

// A bundle is told by its content: an archive kiln reads, with an entry.
// An archive whose first entry is refused (a name climbing out with "..")
// is still one, and a compressed file that is no archive is no disk image
// either (qemu-img reads no compressed disks): the archive reader says
// what is wrong with them.
Result<bool> is_bundle(const fs::path& source) {
  KILN_ASSIGN(std::string compression, compression_of_file(source));
  auto reader = TarReader::open(source);
  TarEntry entry;
  Result<bool> first = reader ? reader->next(entry) : Result<bool>(std::unexpected(reader.error()));
  if (first && *first) return true;
  if (!first && reader && reader->recognised()) return std::unexpected(std::move(first).error());
  if (compression.empty()) return false;
  if (!first) {
    Error error = std::move(first).error();
    error.message += "; kiln import takes a disk image, or a bundle: a tar archive of disk images and a Xen config";
    return std::unexpected(std::move(error));
  }
  return fail(ErrorKind::kBadInput,
              "{}: an empty archive ({}): a bundle holds a root filesystem image, a swap image and a Xen config",
              source.string(), compression);
}

// A Xen config is a page of text; a bundle's "config" of gigabytes is not
// read into memory.
constexpr uint64_t kMaxConfigBytes = 1 << 20;

Result<ImportResult> import_bundle_staged(ImportRequest& request, std::optional<fs::path> output,
                                          const std::string& source_sha256, TempDir staged, Reporter& reporter) {
  const fs::path& source = request.source;
  const fs::path unpacked = staged.path() / "bundle";
  std::error_code ec;
  fs::create_directory(unpacked, ec);
  if (ec) return fail_errno("cannot create", unpacked.string(), ec.value());
  reporter.step("unpack", "its regular files");
  KILN_ASSIGN(std::vector<std::string> files,
              extract_regular_files(source, unpacked, [&](uint64_t done, uint64_t total) {
                reporter.progress(done, total);
              }));
  reporter.done(fmt::format("{} files", files.size()));

  reporter.step("config", "");
  BundleParts bundle;
  KILN_ASSIGN(bundle.config, find_bundle_config(files, source.string()));
  const fs::path config_file = unpacked / bundle.config;
  if (uint64_t size = fs::file_size(config_file, ec); size > kMaxConfigBytes)
    return fail(ErrorKind::kBadInput, "{}: {} is {}, too large for a Xen domain config", source.string(),
                bundle.config, format_size(size));
  KILN_ASSIGN(std::string text, read_file(config_file));
  KILN_ASSIGN(bundle.spec, parse_xen_config(text, fmt::format("{}({})", source.string(), bundle.config)));
  const DomainSpec& spec = bundle.spec;
  std::vector<BundleDisk> disks;
  for (const DomainDisk& disk : spec.disks) {
    if (disk.cdrom && disk.path.empty()) continue;
    KILN_ASSIGN(std::string member, bundle_member_for(disk, files));
    for (const BundleDisk& other : disks)
      if (other.member == member)
        return fail_at(disk.where, "disks {} and {} are the same file, {}", other.disk->frontend, disk.frontend,
                       member);
    BundleDisk d{&disk, member};
    // Xen's file: and tap:aio: serve raw images; those are looked into.
    if (disk.format == DiskFormat::kRaw) {
      const fs::path file = unpacked / member;
      KILN_ASSIGN(d.swap, has_swap_signature(file));
      KILN_ASSIGN(Candidate found, inspect(whole_file(file, fs::file_size(file, ec))));
      d.os_root = found.os_release;
    }
    disks.push_back(std::move(d));
  }
  KILN_ASSIGN(BundleChoice choice, choose_bundle_disks(spec, disks));
  bundle.how = choice.how;
  reporter.done(fmt::format("{}: the root is {}", bundle.config, choice.how));

  if (request.name.empty()) request.name = is_plain_file_name(spec.name) ? spec.name : default_name(source);
  if (!is_plain_file_name(request.name))
    return fail(ErrorKind::kBadInput, "image name \"{}\" is not a plain name: give --name", request.name);
  take_config_shape(spec, request.memory_mib, request.vcpus);
  if (!output) {
    request.output_dir = fs::path("out") / request.name;
    KILN_ASSIGN(output, output_dir_of(request.output_dir));
  }

  const BundleDisk& root = disks[choice.root];
  const fs::path root_file = unpacked / root.member;
  const fs::path disk = staged.path() / "disk.raw";
  SourceFormat format{"raw", fs::file_size(root_file, ec), ""};
  if (root.disk->format == DiskFormat::kRaw) {
    fs::rename(root_file, disk, ec);
    if (ec) return fail_errno("cannot rename", root_file.string(), ec.value());
  } else {
    reporter.step("convert", fmt::format("{} to raw", root.member));
    KILN_ASSIGN(format, probe_format(root_file));
    if (format.format != "qcow2")
      return fail_at(root.disk->where, "disk {}: the config says qcow2, and {} is {}", root.disk->frontend,
                     root.member, format.format);
    // A backing file would be read from this host: a bundle's disks stand alone.
    if (!format.backing_file.empty())
      return fail_at(root.disk->where, "disk {}: {} has a backing file ({}); kiln imports a bundle's disks only "
                     "when they stand alone",
                     root.disk->frontend, root.member, shown_value(format.backing_file));
    KILN_TRY(check_consistency(root_file, format));
    Command convert;
    convert.argv = {"qemu-img", "convert", "-O", "raw", "-f", "qcow2", root_file.string(), disk.string()};
    KILN_TRY(system_runner().run(convert));
    fs::remove(root_file, ec);
    reporter.done();
  }
  bundle.disks.push_back({root.member, root.disk->frontend, "root", ""});
  for (size_t n = 0; n < choice.swaps.size(); ++n) {
    const BundleDisk& swap = disks[choice.swaps[n]];
    std::string file = n == 0 ? "swap.img" : fmt::format("swap{}.img", n + 1);
    fs::rename(unpacked / swap.member, staged.path() / file, ec);
    if (ec) return fail_errno("cannot rename", (unpacked / swap.member).string(), ec.value());
    bundle.disks.push_back({swap.member, swap.disk->frontend, "swap", file});
  }
  KILN_TRY(remove_tree(unpacked));
  return import_converted(request, format, source_sha256, std::move(staged), *output, &bundle, reporter);
}

// A jailtime-style bundle: unpacked (regular files only) into a staging
// directory beside the output, its config read, its root image imported as
// a disk is and its swap areas carried.
Result<ImportResult> import_bundle(ImportRequest request, Reporter& reporter) {
  const fs::path source = request.source;
  std::optional<fs::path> output;
  if (!request.output_dir.empty()) {
    KILN_ASSIGN(output, output_dir_of(request.output_dir));
  }
  reporter.step("inspect", source.string());
  KILN_ASSIGN(std::string compression, compression_of_file(source));
  KILN_ASSIGN(std::string source_sha256, file_digest_hex(source));
  reporter.done(compression.empty() ? "an archive" : fmt::format("an archive, {}", compression));
  // Without -o the output is out/NAME, NAME from the config.
  fs::path parent = output ? output->parent_path() : fs::absolute("out").lexically_normal();
  std::string prefix = (output ? output->filename().string() : default_name(source)) + ".import";
  KILN_ASSIGN(TempDir staged, staging_in(parent, prefix));
  const fs::path staging = staged.path();
  auto imported = import_bundle_staged(request, output, source_sha256, std::move(staged), reporter);
  if (!imported) return std::unexpected(about_source(std::move(imported).error(), staging, source));
  return imported;
}

// NAME.xl.cfg: the bundle's domain with the output's files, as a bake's
// "xen" output is written: the image's own kernel and initramfs, each disk
// at the device the bundle's config gave it, root= that disk (or its
// `root_partition`) by device name, which every backend translates (UML
// boots without the initramfs that root=UUID= needs), its vifs and on_*
// actions. `kiln boot` of it attaches the swap areas too.
Result<std::string> bundle_xen_config(const DomainSpec& config, const ImageManifest& m, int root_partition,
                                      const fs::path& output) {
  DomainSpec spec;
  spec.name = m.name;
  spec.memory_mib = m.memory_mib;
  spec.vcpus = m.vcpus;
  spec.kernel = (output / "vmlinuz").string();
  spec.ramdisk = (output / "initrd.img").string();
  const std::string& device = m.imported_disks.front().device;
  spec.root = root_partition > 0 ? fmt::format("/dev/{}{} ro", device, root_partition)
                                  : fmt::format("/dev/{} ro", device);
  spec.extra = "console=hvc0";
  for (const ManifestImportedDisk& d : m.imported_disks)
    spec.disks.push_back({.backend = DiskBackend::kFile, .path = (output / d.file).string(), .frontend = d.device});
  spec.vifs = config.vifs;
  spec.on_poweroff = config.on_poweroff;
  spec.on_reboot = config.on_reboot;
  spec.on_crash = config.on_crash;
  return write_xen_config(spec);
}

}  // namespace

Result<ImportResult> import_disk_image(ImportRequest request, Reporter& reporter) {
  auto started = Clock::now();
  std::error_code ec;
  if (!fs::is_regular_file(request.source, ec))
    return fail(ErrorKind::kBadInput, "{}: no such file", request.source.string());
  KILN_ASSIGN(bool bundle, is_bundle(request.source));
  if (bundle) {
    auto imported = import_bundle(std::move(request), reporter);
    if (imported) imported->seconds = std::chrono::duration<double>(Clock::now() - started).count();
    return imported;
  }
  if (request.name.empty()) request.name = default_name(request.source);
  if (!is_plain_file_name(request.name))
    return fail(ErrorKind::kBadInput, "image name \"{}\" is not a plain name: give --name", request.name);
  if (request.output_dir.empty()) request.output_dir = fs::path("out") / request.name;
  KILN_ASSIGN(fs::path output, output_dir_of(request.output_dir));

  reporter.step("inspect", request.source.string());
  KILN_ASSIGN(SourceFormat format, probe_format(request.source));
  KILN_TRY(check_consistency(request.source, format));
  KILN_ASSIGN(std::string source_sha256, file_digest_hex(request.source));
  reporter.done(fmt::format("{}, {}", format.format, format_size(format.virtual_size)));

  KILN_ASSIGN(TempDir staged, staging_in(output.parent_path(), output.filename().string() + ".import"));
  fs::path disk = staged.path() / "disk.raw";
  reporter.step("convert", fmt::format("{} to raw", format.format));
  Command convert;
  convert.argv = {"qemu-img", "convert", "-O", "raw", "-f", format.format, request.source.string(), disk.string()};
  auto converted = system_runner().run(convert);
  if (!converted)
    return fail(ErrorKind::kBadInput, "{}: qemu-img could not read all of it (truncated or damaged?): {}",
                request.source.string(), converted.error().message);
  reporter.done();

  const fs::path staging = staged.path();
  auto imported = import_converted(request, format, source_sha256, std::move(staged), output, nullptr, reporter);
  if (!imported) return std::unexpected(about_source(std::move(imported).error(), staging, request.source));
  imported->seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return imported;
}

namespace {

Result<ImportResult> import_converted(const ImportRequest& request, const SourceFormat& format,
                                      const std::string& source_sha256, TempDir staged, const fs::path& output,
                                      const BundleParts* bundle, Reporter& reporter) {
  std::error_code ec;
  const fs::path disk = staged.path() / "disk.raw";
  KILN_ASSIGN(PartitionTable table, read_partition_table(disk));
  std::vector<Candidate> candidates;
  if (table.label.empty()) {
    KILN_ASSIGN(Candidate whole, inspect(whole_file(disk, format.virtual_size)));
    candidates.push_back(whole);
  }
  for (const TablePartition& p : table.partitions) {
    KILN_ASSIGN(Candidate c, inspect(Candidate{p.number, p.offset, p.size, p.type, disk}));
    candidates.push_back(c);
  }
  std::optional<Secret> passphrase;
  if (!request.luks_passphrase_file.empty()) {
    auto read = Secret::passphrase_file(request.luks_passphrase_file);
    if (!read) return fail(ErrorKind::kBadInput, "--luks-passphrase-file: {}", read.error().message);
    passphrase = std::move(*read);
  }
  KILN_ASSIGN(Containers containers, open_containers(candidates, passphrase ? &*passphrase : nullptr, request.source,
                                                     staged.path(), reporter));
  reporter.step("find root", "");
  KILN_ASSIGN(FoundRoot found, find_root(request.source, candidates));
  const Candidate& root = *found.root;
  reporter.done(found.how);

  reporter.step("kernel", "");
  KILN_ASSIGN(std::string kernel_version, take_kernel(request.source, candidates, root, staged.path()));
  reporter.done(kernel_version);

  reporter.step("agent", "kiln's guest agent into the root");
  const Architecture* arch = nullptr;
  std::string dpkg_status, crypttab;
  {
    KILN_ASSIGN(Ext4Image fs, Ext4Image::open(root.file, root.offset, true));
    KILN_ASSIGN(arch, architecture_of(fs, request.source));
    if (has(fs, "/var/lib/dpkg/status")) {
      KILN_ASSIGN(dpkg_status, fs.read_file("/var/lib/dpkg/status"));
    }
    if (root.luks >= 0 && has(fs, "/etc/crypttab")) {
      KILN_ASSIGN(crypttab, fs.read_file("/etc/crypttab"));
    }
    KILN_ASSIGN(std::string systemd, find_unit(fs, "multi-user.target"));
    if (systemd.empty()) {
      reporter.warn("the image has no systemd: kiln's guest agent is not installed, and `kiln boot --wait-ready` "
                    "cannot tell when it is up");
    } else {
      KILN_TRY(install_guest_agent(fs, 0));
      KILN_ASSIGN(bool exec, install_exec_agent(fs, arch->dpkg, 0));
      if (!exec) reporter.warn(fmt::format("no exec agent for {} images in this kiln", arch->dpkg));
    }
    KILN_TRY(fs.close());
  }
  reporter.done(std::string(arch->dpkg));
  KILN_TRY(close_containers(containers, root, reporter));

  ImageManifest m;
  m.kiln_version = KILN_VERSION;
  m.imported_from = fs::absolute(request.source).string();
  m.imported_format = bundle ? "tar" : format.format;
  m.imported_sha256 = source_sha256;
  m.name = request.name;
  m.version = "imported";
  m.description = bundle ? fmt::format("imported from {} (a bundle; its config {})", request.source.filename().string(),
                                       bundle->config)
                         : fmt::format("imported from {} ({})", request.source.filename().string(), format.format);
  m.architecture = arch->dpkg;
  m.root_filesystem_type = root.kind;
  m.root_filesystem_uuid = root.uuid;
  m.root_filesystem_size = root.size;
  m.root_filesystem_label = root.label;
  m.kernel = kernel_version;
  m.kernel_cmdline = fmt::format("root=UUID={} ro console=tty0 console={}", root.uuid, arch->serial_console);
  describe_containers(containers, root, crypttab, m);
  m.memory_mib = request.memory_mib.value_or(1024);
  m.vcpus = request.vcpus.value_or(2);
  m.build_timestamp = static_cast<int64_t>(std::time(nullptr));
  for (const InstalledPackage& p : installed_packages(dpkg_status)) m.packages.push_back({p.name, p.version, p.architecture});
  std::string image_file = "disk.raw";
  if (table.label.empty()) {
    // A bare filesystem boots as root.img, as a baked plain layout does.
    image_file = "root.img";
    fs::rename(disk, staged.path() / image_file, ec);
    if (ec) return fail_errno("cannot rename", disk.string(), ec.value());
    m.layout = "plain";
  } else {
    if (m.layout.empty()) m.layout = table.label == "gpt" ? "gpt" : "mbr";
    for (const TablePartition& p : table.partitions)
      m.partitions.push_back(
          {p.number, p.number == root.number ? "root" : fmt::format("part{}", p.number), p.type, "", p.offset, p.size});
  }
  m.size = format.virtual_size;
  m.artifacts.push_back({image_file, format.virtual_size, ""});
  std::vector<std::string> described = {"vmlinuz", "initrd.img"};
  std::string how = found.how;
  if (bundle) {
    m.imported_config = bundle->config;
    m.imported_disks = bundle->disks;
    m.imported_disks.front().file = image_file;
    for (const ManifestImportedDisk& d : m.imported_disks)
      if (d.use == "swap") described.push_back(d.file);
    std::string config = m.name + ".xl.cfg";
    KILN_ASSIGN(std::string text, bundle_xen_config(bundle->spec, m, root.number, output));
    KILN_TRY(write_file_atomic(staged.path() / config, text));
    described.push_back(config);
    how = fmt::format("{}: {}", bundle->how, found.how);
  }
  for (const std::string& file : described) {
    KILN_ASSIGN(std::string sha256, file_digest_hex(staged.path() / file));
    m.artifacts.push_back({file, fs::file_size(staged.path() / file), sha256});
  }
  KILN_TRY(write_file_atomic(staged.path() / "manifest.json", write_image_manifest(m)));
  KILN_TRY(install_directory(std::move(staged), output));
  return ImportResult{output, std::move(m), how, 0};
}

}  // namespace
}  // namespace kiln
