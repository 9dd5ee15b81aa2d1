#include "builder/assembler.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>

#include "base/files.h"
#include "base/size.h"
#include "builder/offline_customizer.h"
#include "builder/system_setup.h"
#include "formats/ext4_image.h"
#include "formats/fat_image.h"
#include "formats/systemd_boot.h"
#include "formats/tar_reader.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

// GPT keeps 1 MiB in front of the first partition and 33 sectors at the end;
// alignment rounds that up to 1 MiB each.
constexpr uint64_t kGptOverhead = 2 * kMiB;
constexpr uint64_t kFilesystemBlock = 4096;

GptLayout gpt_layout(const Plan& plan) {
  const StorageSection& storage = plan.recipe->storage;
  GptLayout layout;
  layout.disk_size = storage.size.value;
  layout.disk_guid = plan.identity.disk;
  layout.partitions = {
      {"esp", GptType::kEfiSystem, plan.identity.esp_partition, storage.esp_size.value},
      {"root", GptType::kLinuxRootX86_64, plan.identity.root_partition, 0},
  };
  return layout;
}

Ext4Options ext4_options(const Plan& plan, const DiskGeometry& geometry) {
  Ext4Options options;
  options.size_bytes = geometry.root_size;
  options.offset_bytes = geometry.root_offset;
  options.fs_type = plan.recipe->storage.filesystem.value;
  options.label = plan.recipe->storage.label.value;
  options.uuid = plan.identity.root_filesystem;
  options.hash_seed = plan.identity.hash_seed;
  options.timestamp = plan.timestamp;
  return options;
}

// A size a user can put in the recipe that holds `root_bytes` of filesystem.
std::string suggested_size(const Plan& plan, uint64_t root_bytes) {
  uint64_t total = root_bytes;
  if (plan.recipe->storage.layout.value == "gpt") total += plan.recipe->storage.esp_size.value + kGptOverhead;
  // Leave a tenth free for the system to run, and round to 64 MiB.
  return recipe_size(round_up(total + total / 10, 64 * kMiB));
}

Result<> check_fits(const Plan& plan, const fs::path& archive, const DiskGeometry& geometry) {
  Ext4Options options = ext4_options(plan, geometry);
  KILN_ASSIGN(uint64_t needed, Ext4Image::minimum_size(archive, options));
  if (needed <= geometry.root_size) return {};
  const auto& size = plan.recipe->storage.size;
  return std::unexpected(Error{
      ErrorKind::kNoSpace,
      fmt::format("the image does not fit: its files need a root filesystem of at least {}, but "
                  "storage.size = \"{}\" leaves {} for it; set storage.size = \"{}\"",
                  format_size(needed), recipe_size(size.value), format_size(geometry.root_size),
                  suggested_size(plan, needed)),
      size.where, {}});
}

int compare_versions(const std::string& a, const std::string& b) { return ::strverscmp(a.c_str(), b.c_str()); }

struct KernelFiles {
  std::string version;
  std::string kernel;  // path inside the image
  std::string initrd;
};

Result<std::optional<KernelFiles>> find_kernel(Ext4Image& fs) {
  KILN_ASSIGN(auto boot, fs.stat("/boot"));
  if (!boot) return std::nullopt;
  KILN_ASSIGN(auto names, fs.list_directory("/boot"));
  std::vector<std::string> versions;
  for (const std::string& name : names)
    if (name.starts_with("vmlinuz-")) versions.push_back(name.substr(8));
  if (versions.empty()) return std::nullopt;
  std::sort(versions.begin(), versions.end(),
            [](const std::string& a, const std::string& b) { return compare_versions(a, b) < 0; });
  KernelFiles files{versions.back(), "/boot/vmlinuz-" + versions.back(), "/boot/initrd.img-" + versions.back()};
  KILN_ASSIGN(auto initrd, fs.stat(files.initrd));
  if (!initrd)
    return fail(ErrorKind::kBadInput, "the image has kernel {} but no {}: install initramfs-tools",
                files.version, files.initrd);
  return files;
}

Result<> extract_file(Ext4Image& fs, const std::string& inside, const fs::path& out) {
  KILN_ASSIGN(std::string content, fs.read_file(inside));
  return write_file_atomic(out, content, 0644);
}

std::string kernel_command_line(const Plan& plan) {
  std::string line = "root=UUID=" + plan.identity.root_filesystem.to_string() + " ro";
  if (!plan.recipe->image.kernel_cmdline.value.empty()) line += " " + plan.recipe->image.kernel_cmdline.value;
  return line;
}

Result<> populate(const Plan& plan, Ext4Image& fs, TarReader& reader, const FilesystemLayout& layout,
                  AssembledImage& out, const fs::path& dir, Reporter& reporter) {
  ImportOptions import_options;
  import_options.progress = [&reporter](uint64_t done, uint64_t total) { reporter.progress(done, total); };
  KILN_ASSIGN(ImportStats stats, fs.import(reader, import_options));
  reporter.note(fmt::format("{} entries, {} of file data", stats.entries, format_size(stats.data_bytes)));
  KILN_TRY(apply_offline_steps(plan.offline_steps, plan, fs));
  KILN_ASSIGN(out.notes, apply_system_setup(fs, plan, layout));

  KILN_ASSIGN(auto status, fs.stat("/var/lib/dpkg/status"));
  if (status) {
    KILN_ASSIGN(out.dpkg_status, fs.read_file("/var/lib/dpkg/status"));
  }
  KILN_ASSIGN(auto kernel, find_kernel(fs));
  bool needs_kernel = plan.recipe->storage.layout.value == "gpt" || plan.recipe->wants_output("kernel");
  if (!kernel && needs_kernel) {
    const auto& packages = plan.recipe->bootstrap.packages;
    return std::unexpected(Error{
        ErrorKind::kBadInput,
        "the image has no kernel (/boot/vmlinuz-*) to boot: add \"linux-image-amd64\" to "
        "bootstrap.packages (or customize.packages)",
        packages.set ? packages.where : Location{plan.recipe->file.string(), 0, 0}, {}});
  }
  if (kernel) {
    out.kernel_version = kernel->version;
    out.kernel = dir / "vmlinuz";
    out.initrd = dir / "initrd.img";
    KILN_TRY(extract_file(fs, kernel->kernel, out.kernel));
    KILN_TRY(extract_file(fs, kernel->initrd, out.initrd));
  }
  return {};
}

// The image's content does not fit after all (the estimate is a bound, and
// offline steps add files): say so the same way the early check does.
Error explain_no_space(const Plan& plan, const fs::path& archive, const DiskGeometry& geometry, Error error) {
  if (error.kind != ErrorKind::kNoSpace) return error;
  auto fits = check_fits(plan, archive, geometry);
  if (!fits) return std::move(fits).error();
  const auto& size = plan.recipe->storage.size;
  return Error{ErrorKind::kNoSpace,
               fmt::format("the image does not fit in storage.size = \"{}\" ({}); set storage.size = \"{}\"",
                           recipe_size(size.value), error.message, suggested_size(plan, geometry.root_size + 64 * kMiB)),
               size.where, {}};
}

}  // namespace

Result<DiskGeometry> plan_geometry(const Plan& plan) {
  DiskGeometry geometry;
  geometry.image_size = plan.recipe->storage.size.value;
  if (plan.recipe->storage.layout.value == "plain") {
    geometry.root_size = geometry.image_size;
    return geometry;
  }
  auto placed = plan_gpt(gpt_layout(plan));
  if (!placed) {
    Error error = std::move(placed).error();
    error.where = plan.recipe->storage.size.where;
    return std::unexpected(std::move(error));
  }
  geometry.partitions = *placed;
  for (const PlacedPartition& partition : geometry.partitions) {
    if (partition.partition.type == GptType::kEfiSystem) geometry.esp = partition;
    if (partition.partition.type == GptType::kLinuxRootX86_64) {
      geometry.root_offset = partition.offset;
      // The rest-of-disk partition stops short of the backup GPT, at a
      // sector boundary; the filesystem ends at its last whole block.
      geometry.root_size = partition.size / kFilesystemBlock * kFilesystemBlock;
    }
  }
  return geometry;
}

Result<AssembledImage> assemble(const Plan& plan, const fs::path& rootfs_archive, const fs::path& dir,
                                Reporter& reporter) {
  const Recipe& recipe = *plan.recipe;
  AssembledImage out;
  KILN_ASSIGN(out.geometry, plan_geometry(plan));
  const DiskGeometry& geometry = out.geometry;
  KILN_TRY(check_fits(plan, rootfs_archive, geometry));

  bool gpt = recipe.storage.layout.value == "gpt";
  fs::path fs_file = gpt ? dir / "disk.raw" : dir / "root.img";
  if (gpt) {
    out.disk = fs_file;
    KILN_TRY(write_gpt(out.disk, gpt_layout(plan)));
  }
  FilesystemLayout layout;
  layout.root_type = recipe.storage.filesystem.value;
  layout.root_uuid = plan.identity.root_filesystem.to_string();
  if (gpt) layout.esp_volume = fat_volume_id_string(plan.identity.esp_volume_id);

  reporter.note(fmt::format("{} of {}, from {}", recipe.storage.filesystem.value,
                            format_size(geometry.root_size), rootfs_archive.filename().string()));
  KILN_ASSIGN(Ext4Image fs, Ext4Image::format(fs_file, ext4_options(plan, geometry)));
  KILN_ASSIGN(TarReader reader, TarReader::open(rootfs_archive));
  auto populated = populate(plan, fs, reader, layout, out, dir, reporter);
  if (!populated) return std::unexpected(explain_no_space(plan, rootfs_archive, geometry, std::move(populated).error()));
  auto closed = fs.close();
  if (!closed) return std::unexpected(explain_no_space(plan, rootfs_archive, geometry, std::move(closed).error()));
  out.kernel_command_line = kernel_command_line(plan);

  if (gpt) {
    reporter.note("EFI system partition: systemd-boot, kernel " + out.kernel_version);
    BootEntry entry{recipe.image.name.value, recipe.image.description.value.empty() ? recipe.image.name.value
                                                                                     : recipe.image.description.value,
                    out.kernel, out.initrd, out.kernel_command_line};
    KILN_ASSIGN(auto files, systemd_boot_files(entry));
    FatOptions fat;
    fat.offset_bytes = geometry.esp->offset;
    fat.size_bytes = geometry.esp->size;
    fat.label = "ESP";
    fat.volume_id = plan.identity.esp_volume_id;
    fat.timestamp = plan.timestamp;
    KILN_TRY(write_fat_image(out.disk, fat, files));
    if (recipe.wants_output("partitions")) {
      out.root = dir / "root.img";
      KILN_ASSIGN(UniqueFd source, open_file(out.disk, O_RDONLY));
      KILN_ASSIGN(UniqueFd target, open_file(out.root, O_RDWR | O_CREAT | O_TRUNC, 0644));
      if (::ftruncate(target.get(), static_cast<off_t>(geometry.root_size)) != 0)
        return fail_errno("cannot size", out.root.string(), errno);
      KILN_TRY(copy_sparse(source.get(), geometry.root_offset, target.get(), 0, geometry.root_size,
                           out.disk.string()));
    }
  } else {
    out.root = fs_file;
  }
  return out;
}

}  // namespace kiln
