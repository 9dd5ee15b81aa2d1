#include "builder/assembler.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <future>

#include "base/files.h"
#include "base/size.h"
#include "builder/kernel_files.h"
#include "builder/offline_customizer.h"
#include "builder/storage_setup.h"
#include "builder/system_setup.h"
#include "base/hash.h"
#include "formats/ext4/ext4_image.h"
#include "formats/disk/fat_image.h"
#include "formats/disk/swap_area.h"
#include "formats/disk/systemd_boot.h"
#include "formats/tree/tar_reader.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

// The options of one volume's filesystem in the stack's plaintext area.
Ext4Options ext4_options(const Plan& plan, const PlacedVolume& volume, const RootStack& stack) {
  Ext4Options options;
  options.size_bytes = whole_blocks(volume.size);
  options.offset_bytes = stack.plaintext_offset() + volume.offset;
  options.fs_type = name_of(volume.filesystem);
  options.label = volume.label;
  options.uuid = volume.uuid;
  options.hash_seed = volume.is_root() ? plan.identity.hash_seed : Uuid::from_name("hash-seed/" + volume.uuid.to_string());
  options.timestamp = plan.timestamp;
  return options;
}

// Which volume an archive path belongs to: the one with the longest
// mountpoint above it. Paths are relative ("srv/www"); mountpoints absolute.
class VolumeRouting {
 public:
  explicit VolumeRouting(const std::vector<PlacedVolume>& volumes) {
    for (const PlacedVolume& volume : volumes)
      if (!volume.mountpoint.empty()) mounts_.push_back({volume.mountpoint.substr(1), volume.name});
  }
  bool split() const { return mounts_.size() > 1; }

  // The select function of `volume`'s import: its own entries, re-rooted,
  // and the directories other volumes are mounted on.
  std::function<bool(TarEntry&)> select(const PlacedVolume& volume) const {
    std::string prefix = volume.mountpoint.substr(1);
    return [this, prefix, name = volume.name](TarEntry& entry) {
      auto slash = entry.path.rfind('/');
      std::string_view parent =
          slash == std::string::npos ? std::string_view() : std::string_view(entry.path).substr(0, slash);
      // A directory another volume is mounted on stays, empty, in its parent.
      if (owner(entry.path) != name && (entry.path.empty() || owner(parent) != name)) return false;
      entry.path = rebase(entry.path, prefix);
      if (entry.type == EntryType::kHardlink) entry.link_target = rebase(entry.link_target, prefix);
      return true;
    };
  }

 private:
  static bool within(std::string_view path, std::string_view dir) {
    return dir.empty() || path == dir || (path.starts_with(dir) && path.size() > dir.size() && path[dir.size()] == '/');
  }
  static std::string rebase(std::string_view path, std::string_view prefix) {
    if (prefix.empty()) return std::string(path);
    if (path == prefix) return {};
    return std::string(path.substr(prefix.size() + 1));
  }
  std::string owner(std::string_view path) const {
    const std::pair<std::string, std::string>* best = nullptr;
    for (const auto& mount : mounts_)
      if (within(path, mount.first) && (!best || mount.first.size() > best->first.size())) best = &mount;
    return best ? best->second : std::string();
  }
  std::vector<std::pair<std::string, std::string>> mounts_;  // relative mountpoint, volume
};

// A size a user can put in the recipe that holds `root_bytes` of filesystem.
std::string suggested_size(const Plan& plan, uint64_t root_bytes, uint64_t root_volume_size) {
  // Everything that is not the root filesystem stays as it is.
  uint64_t total = plan.recipe->storage.size.value - root_volume_size + root_bytes;
  // Leave a tenth free for the system to run, and round to 64 MiB.
  return recipe_size(round_up(total + root_bytes / 10, 64 * kMiB));
}

Result<> check_fits(const Plan& plan, const fs::path& archive, const PlacedVolume& root, const RootStack& stack) {
  Ext4Options options = ext4_options(plan, root, stack);
  KILN_ASSIGN(uint64_t needed, Ext4Image::minimum_size(archive, options));
  if (needed <= options.size_bytes) return {};
  const auto& size = plan.recipe->storage.size;
  return std::unexpected(Error{
      ErrorKind::kNoSpace,
      fmt::format("the image does not fit: its files need a root filesystem of at least {}, but "
                  "storage.size = \"{}\" leaves {} for it; set storage.size = \"{}\"",
                  format_size(needed), recipe_size(size.value), format_size(options.size_bytes),
                  suggested_size(plan, needed, options.size_bytes)),
      size.where, {}});
}

std::string kernel_command_line(const Plan& plan) {
  std::string line = "root=" + root_device(*plan.recipe, plan.identity) + " ro";
  if (!plan.recipe->image.kernel_cmdline.value.empty())
    line += " " + with_serial_console(plan.recipe->image.kernel_cmdline.value, *plan.arch);
  return line;
}

// systemd-boot for the ESP: the image's own when it has one (it matches the
// image's systemd and architecture), else the host's, which only boots an
// image of the host's architecture.
Result<BootLoader> find_boot_loader(const Plan& plan, Ext4Image& fs) {
  BootLoader loader{std::string(plan.arch->efi_suffix), {}, {}};
  std::string inside = systemd_boot_path(plan.arch->efi_suffix);
  KILN_ASSIGN(auto own, fs.stat(inside));
  if (own) {
    KILN_ASSIGN(loader.content, fs.read_file(inside));
    return loader;
  }
  if (plan.arch->dpkg != host_architecture())
    return fail(ErrorKind::kBadInput,
                "the {} image has no {} for its EFI system partition: add \"systemd-boot-efi\" to its packages",
                plan.arch->dpkg, inside);
  loader.file = inside;
  return loader;
}

Result<> populate(const Plan& plan, Ext4Image& fs, TarReader& reader, const FilesystemLayout& layout,
                  const ImportOptions& import_options, AssembledImage& out, const fs::path& dir, Reporter& reporter) {
  KILN_ASSIGN(ImportStats stats, fs.import(reader, import_options));
  reporter.note(fmt::format("{} entries, {} of file data", stats.entries, format_size(stats.data_bytes)));
  for (const MountEntry& volume : layout.volumes) {
    if (volume.mountpoint.empty()) continue;
    KILN_ASSIGN(auto mount_dir, fs.stat(volume.mountpoint));
    if (!mount_dir) {
      KILN_TRY(make_parents(fs, volume.mountpoint, plan.timestamp));
      KILN_TRY(fs.make_directory(volume.mountpoint, Ext4Attributes{0755, 0, 0, plan.timestamp}));
    }
  }
  KILN_TRY(apply_offline_steps(plan.offline_steps, plan, fs));
  KILN_ASSIGN(out.notes, apply_system_setup(fs, plan, layout));

  KILN_ASSIGN(auto status, fs.stat("/var/lib/dpkg/status"));
  if (status) {
    KILN_ASSIGN(out.dpkg_status, fs.read_file("/var/lib/dpkg/status"));
  }
  KILN_ASSIGN(auto kernel, find_kernel(fs));
  bool needs_kernel = plan.recipe->storage.layout.value != StorageLayout::kPlain || plan.recipe->wants_output("kernel");
  if (!kernel && needs_kernel) {
    const auto& packages = plan.recipe->bootstrap.packages;
    return std::unexpected(Error{
        ErrorKind::kBadInput,
        fmt::format("the image has no kernel (/boot/vmlinuz-*) to boot: add \"{}\" to "
                    "bootstrap.packages (or customize.packages)",
                    plan.arch->kernel_package),
        packages.set ? packages.where : Location{plan.recipe->file.string(), 0, 0}, {}});
  }
  if (plan.recipe->storage.layout.value != StorageLayout::kPlain) {
    KILN_ASSIGN(out.boot_loader, find_boot_loader(plan, fs));
  }
  if (kernel) {
    out.kernel_version = kernel->version;
    out.kernel = dir / "vmlinuz";
    out.initrd = dir / "initrd.img";
    KILN_TRY(extract_kernel(fs, *kernel, dir));
  }
  return {};
}

// The image's content does not fit after all (the estimate is a bound, and
// offline steps add files): say so the same way the early check does.
Error explain_no_space(const Plan& plan, const fs::path& archive, const PlacedVolume& volume,
                       const RootStack& stack, Error error) {
  if (error.kind != ErrorKind::kNoSpace) return error;
  if (error.host_disk_full) {
    error.message = fmt::format("the host's disk filled up while writing the image ({}); the content fits "
                                "storage.size, so a larger size would not help: free space there or bake "
                                "with -o on another disk",
                                error.message);
    return error;
  }
  const auto& size = plan.recipe->storage.size;
  if (!volume.is_root() || plan.recipe->storage.layout.value == StorageLayout::kLvm) {
    Location where = size.where;
    for (const LvmVolume& declared : plan.recipe->storage.lvm.volumes)
      if (declared.name.value == volume.name) where = declared.size.set ? declared.size.where : declared.where;
    return Error{ErrorKind::kNoSpace,
                 fmt::format("volume \"{}\" ({}, mounted at {}) is too small for its files ({}); make it larger",
                             volume.name, format_size(volume.size), volume.mountpoint, error.message),
                 where, {}};
  }
  auto fits = check_fits(plan, archive, volume, stack);
  if (!fits) return std::move(fits).error();
  return Error{ErrorKind::kNoSpace,
               fmt::format("the image does not fit in storage.size = \"{}\" ({}); set storage.size = \"{}\"",
                           recipe_size(size.value), error.message,
                           suggested_size(plan, volume.size + 64 * kMiB, volume.size)),
               size.where, {}};
}

// Creates the image file at its full size (sparse): disk.raw with its GPT,
// or root.img.
Result<> create_image(const DiskLayout& layout, const fs::path& file) {
  if (!layout.table.partitions.empty()) {
    KILN_TRY(write_gpt(file, layout.table));
    return {};
  }
  KILN_ASSIGN(UniqueFd fd, open_file(file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (::ftruncate(fd.get(), static_cast<off_t>(layout.image_size)) != 0)
    return fail_errno("cannot size", file.string(), errno);
  return {};
}

FilesystemLayout filesystem_layout(const Plan& plan, const RootStack& stack) {
  FilesystemLayout layout;
  layout.root_type = stack.root().filesystem;
  layout.root_uuid = stack.root().uuid.to_string();
  if (plan.recipe->storage.layout.value != StorageLayout::kPlain) layout.esp_volume = fat_volume_id_string(plan.identity.esp_volume_id);
  for (const PlacedVolume& volume : stack.volumes())
    if (!volume.is_root()) layout.volumes.push_back({volume.uuid.to_string(), volume.mountpoint, volume.filesystem});
  layout.crypttab = crypttab_for(*plan.recipe, plan.identity);
  return layout;
}

// Writes the root filesystem: the archive (less what other volumes hold),
// the offline customisation and kiln's system setup; extracts the kernel.
Result<> write_root(const Plan& plan, const fs::path& archive, const RootStack& stack,
                    const VolumeRouting& routing, AssembledImage& out, const fs::path& dir, Reporter& reporter) {
  const PlacedVolume& root = stack.root();
  reporter.note(fmt::format("{} of {}, from {}", name_of(root.filesystem), format_size(root.size), archive.filename().string()));
  KILN_ASSIGN(Ext4Image fs, Ext4Image::format(stack.plaintext_file(), ext4_options(plan, root, stack)));
  KILN_ASSIGN(TarReader reader, TarReader::open(archive));
  ImportOptions options;
  options.progress = [&reporter](uint64_t done, uint64_t total) { reporter.progress(done, total); };
  if (routing.split()) options.select = routing.select(root);
  auto populated = populate(plan, fs, reader, filesystem_layout(plan, stack), options, out, dir, reporter);
  if (!populated) return std::unexpected(explain_no_space(plan, archive, root, stack, std::move(populated).error()));
  auto closed = fs.close();
  if (!closed) return std::unexpected(explain_no_space(plan, archive, root, stack, std::move(closed).error()));
  return {};
}

// A volume besides the root one: its part of the archive, or a swap area.
Result<> write_volume(const Plan& plan, const fs::path& archive, const RootStack& stack,
                      const VolumeRouting& routing, const PlacedVolume& volume, Reporter& reporter) {
  uint64_t at = stack.plaintext_offset() + volume.offset;
  if (volume.filesystem == FilesystemType::kSwap) {
    reporter.note(fmt::format("{}: swap, {}", volume.name, format_size(volume.size)));
    return write_swap_area(stack.plaintext_file(), at, volume.size, volume.uuid, volume.label);
  }
  reporter.note(fmt::format("{}: {} of {} at {}", volume.name, name_of(volume.filesystem), format_size(volume.size),
                            volume.mountpoint));
  KILN_ASSIGN(Ext4Image fs, Ext4Image::format(stack.plaintext_file(), ext4_options(plan, volume, stack)));
  KILN_ASSIGN(TarReader reader, TarReader::open(archive));
  ImportOptions options;
  options.select = routing.select(volume);
  if (auto imported = fs.import(reader, options); !imported)
    return std::unexpected(explain_no_space(plan, archive, volume, stack, std::move(imported).error()));
  if (auto closed = fs.close(); !closed)
    return std::unexpected(explain_no_space(plan, archive, volume, stack, std::move(closed).error()));
  return {};
}

// Copies [offset, offset + size) of the disk into a file of its own and
// returns the copy's sha256.
Result<std::string> extract_region(const fs::path& disk, uint64_t offset, uint64_t size, const fs::path& out) {
  KILN_ASSIGN(UniqueFd source, open_file(disk, O_RDONLY));
  KILN_ASSIGN(UniqueFd target, open_file(out, O_RDWR | O_CREAT | O_TRUNC, 0644));
  if (::ftruncate(target.get(), static_cast<off_t>(size)) != 0) return fail_errno("cannot size", out.string(), errno);
  return copy_sparse_digest(source.get(), offset, target.get(), size, disk.string());
}

// The "partitions" output: root.img, and for an unencrypted lvm layout one
// file per other volume, as a Xen domain's disks. Reads only the volumes'
// part of the disk, so it may run while the rest of the disk is written.
Result<std::vector<PartitionImage>> write_partition_images(const Plan& plan, const RootStack& stack,
                                                           const DiskLayout& geometry, const fs::path& disk,
                                                           const fs::path& dir) {
  bool per_volume = plan.recipe->storage.layout.value == StorageLayout::kLvm && !stack.encrypted();
  if (!per_volume) {
    PartitionImage root{"root.img", stack.encrypted() ? "" : stack.root().name, ""};
    KILN_ASSIGN(root.sha256, extract_region(disk, geometry.root_offset, geometry.root_size, dir / root.file));
    return std::vector<PartitionImage>{root};
  }
  std::vector<const PlacedVolume*> order = {&stack.root()};
  for (const PlacedVolume& volume : stack.volumes())
    if (!volume.is_root()) order.push_back(&volume);
  std::vector<PartitionImage> images;
  for (const PlacedVolume* volume : order) {
    PartitionImage image{volume->is_root() ? "root.img" : volume->name + ".img", volume->name, ""};
    KILN_ASSIGN(image.sha256,
                extract_region(disk, geometry.root_offset + volume->offset, volume->size, dir / image.file));
    images.push_back(std::move(image));
  }
  return images;
}

// Writes the EFI system partition: systemd-boot, the kernel and the initrd.
Result<> write_esp(const Plan& plan, const AssembledImage& image) {
  const Recipe& recipe = *plan.recipe;
  BootEntry entry{recipe.image.name.value,
                  recipe.image.description.value.empty() ? recipe.image.name.value : recipe.image.description.value,
                  image.kernel, image.initrd, image.kernel_command_line};
  KILN_ASSIGN(auto files, systemd_boot_files(entry, image.boot_loader));
  FatOptions fat;
  fat.offset_bytes = image.geometry.esp->offset;
  fat.size_bytes = image.geometry.esp->size;
  fat.label = "ESP";
  fat.volume_id = plan.identity.esp_volume_id;
  fat.timestamp = plan.timestamp;
  return write_fat_image(image.disk, fat, files);
}

}  // namespace

Result<AssembledImage> assemble(const Plan& plan, const fs::path& rootfs_archive, const fs::path& dir,
                                Reporter& reporter) {
  const Recipe& recipe = *plan.recipe;
  AssembledImage out;
  out.geometry = plan.disk;
  const DiskLayout& geometry = out.geometry;

  bool gpt = recipe.storage.layout.value != StorageLayout::kPlain;
  fs::path image_file = gpt ? dir / "disk.raw" : dir / "root.img";
  KILN_TRY(create_image(geometry, image_file));
  if (gpt) out.disk = image_file;
  KILN_ASSIGN(RootStack stack,
              RootStack::create(plan, image_file, geometry.root_offset, geometry.root_size, dir, reporter));
  VolumeRouting routing(stack.volumes());
  // With other volumes taking their share, the archive as a whole is no
  // measure of the root filesystem; running out of room is then reported
  // per volume.
  if (!routing.split()) KILN_TRY(check_fits(plan, rootfs_archive, stack.root(), stack));

  KILN_TRY(write_root(plan, rootfs_archive, stack, routing, out, dir, reporter));
  for (const PlacedVolume& volume : stack.volumes())
    if (!volume.is_root()) KILN_TRY(write_volume(plan, rootfs_archive, stack, routing, volume, reporter));
  KILN_ASSIGN(out.encryption, stack.seal(reporter));
  out.volumes = stack.volumes();
  out.lvm = stack.lvm();
  out.root_device = root_device(recipe, plan.identity);
  out.kernel_command_line = kernel_command_line(plan);

  if (gpt) {
    // The partition images are copied out of the finished volumes and hashed
    // in the same pass on one core, while the ESP is written (and disk.raw
    // hashed, when the recipe asks for that at bake) on the other.
    std::future<Result<std::vector<PartitionImage>>> partitions;
    if (recipe.wants_output("partitions"))
      partitions = std::async(std::launch::async, write_partition_images, std::cref(plan), std::cref(stack),
                              std::cref(geometry), out.disk, dir);
    reporter.note("EFI system partition: systemd-boot, kernel " + out.kernel_version);
    Result<> esp = write_esp(plan, out);
    Result<std::string> disk_digest = !esp                             ? Result<std::string>(std::unexpected(std::move(esp).error()))
                                      : recipe.hashes_disk_at_bake() ? file_digest_hex(out.disk)
                                                                     : Result<std::string>(std::string());
    if (partitions.valid()) {
      KILN_ASSIGN(out.partition_images, partitions.get());
      out.root = dir / "root.img";
    }
    KILN_ASSIGN(out.disk_sha256, std::move(disk_digest));
  } else {
    out.root = image_file;
    out.partition_images.push_back({"root.img", stack.encrypted() ? "" : stack.root().name, ""});
  }
  return out;
}

}  // namespace kiln
