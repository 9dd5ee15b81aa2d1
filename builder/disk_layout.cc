#include "builder/disk_layout.h"

#include "base/size.h"
#include "builder/plan.h"
#include "crypto/luks.h"
#include "formats/disk/lvm_layout.h"

namespace kiln {
namespace {

constexpr uint64_t kGptAlignment = kMiB;

GptType root_partition_type(const StorageSection& storage) {
  if (storage.luks.present.value) return GptType::kLinuxLuks;
  if (storage.layout.value == StorageLayout::kLvm) return GptType::kLinuxLvm;
  // Plain dm-crypt has no type of its own; the root type would invite
  // systemd's auto-mounting of a partition it cannot read.
  if (storage.dmcrypt.present.value) return GptType::kLinuxFilesystem;
  return GptType::kLinuxRootX86_64;
}

// The root partition takes the rest of the disk in whole MiB: dm-crypt
// maps only whole encryption sectors (4096 bytes for LUKS2), and the rest
// of the disk ends at an odd sector, before the backup table.
uint64_t root_partition_size(const StorageSection& storage) {
  uint64_t start = kGptAlignment + round_up(storage.esp_size.value, kGptAlignment);
  uint64_t end = storage.size.value > kGptBackupTableBytes ? storage.size.value - kGptBackupTableBytes : 0;
  return end > start + kGptAlignment ? (end - start) / kGptAlignment * kGptAlignment : 0;  // 0: no room
}

Result<> place_partitions(const Recipe& recipe, const ImageIdentity& identity, DiskLayout& layout) {
  const StorageSection& storage = recipe.storage;
  const uint64_t root_size = root_partition_size(storage);
  if (root_size == 0)
    return fail_at(storage.size.where,
                   "storage.size = \"{}\" leaves no room for the root partition next to the {} EFI system partition "
                   "(storage.esp_size{}); set storage.size = \"{}\"",
                   recipe_size(storage.size.value), format_size(storage.esp_size.value),
                   storage.esp_size.set ? "" : ", the default",
                   recipe_size(round_up(storage.esp_size.value + 512 * kMiB, 256 * kMiB)));
  layout.table.disk_size = storage.size.value;
  layout.table.disk_guid = identity.disk;
  layout.table.partitions = {
      {"esp", GptType::kEfiSystem, identity.esp_partition, storage.esp_size.value},
      {"root", root_partition_type(storage), identity.root_partition, root_size},
  };
  auto placed = plan_gpt(layout.table);
  if (!placed) {
    Error error = std::move(placed).error();
    error.where = storage.size.where;
    return std::unexpected(std::move(error));
  }
  layout.partitions = std::move(*placed);
  for (const PlacedPartition& partition : layout.partitions) {
    if (partition.partition.type == GptType::kEfiSystem) {
      layout.esp = partition;
    } else {
      layout.root_offset = partition.offset;
      layout.root_size = whole_blocks(partition.size);
    }
  }
  return {};
}

// What is not the root's plaintext: the ESP, the tables, the header.
std::string overhead_text(const StorageSection& storage) {
  return fmt::format("the {} EFI system partition{}", format_size(storage.esp_size.value),
                     storage.luks.present.value ? ", the LUKS header" : "");
}

Result<> check_volumes_fit(const StorageSection& storage, const DiskLayout& layout) {
  const uint64_t extent = storage.lvm.extent_size.value;
  uint64_t total = 0;
  std::vector<std::string> parts;
  const LvmVolume* first_over = nullptr;
  bool rest = false;
  for (const LvmVolume& volume : storage.lvm.volumes) {
    // A "rest" volume needs at least one extent of its own.
    uint64_t bytes = volume.rest ? extent : round_up(volume.size.value, extent);
    rest = rest || volume.rest;
    total += bytes;
    parts.push_back(fmt::format("{} {}", volume.name.value, volume.rest ? "rest" : recipe_size(bytes)));
    if (total > layout.volume_group_size && !first_over) first_over = &volume;
  }
  if (!first_over) return {};
  uint64_t needed = storage.size.value + (total - layout.volume_group_size);
  return fail_at(first_over->rest ? first_over->where : first_over->size.where,
                 "storage.lvm.volumes need {} ({}{}), but the volume group holds {} (storage.size {} less {} and the "
                 "LVM metadata); set storage.size = \"{}\" or make the volumes smaller",
                 format_size(total), fmt::join(parts, ", "), rest ? ", at least one extent for the rest" : "",
                 format_size(layout.volume_group_size), recipe_size(storage.size.value), overhead_text(storage),
                 recipe_size(round_up(needed, kMiB)));
}

}  // namespace

Result<DiskLayout> plan_disk_layout(const Recipe& recipe, const ImageIdentity& identity) {
  const StorageSection& storage = recipe.storage;
  DiskLayout layout;
  layout.image_size = storage.size.value;
  if (storage.layout.value == StorageLayout::kPlain) {
    layout.root_size = whole_blocks(storage.size.value);
  } else {
    KILN_TRY(place_partitions(recipe, identity, layout));
  }
  if (storage.luks.present.value) layout.header_size = luks_header_size(storage.luks.version.value);
  // The plaintext needs room for at least a small filesystem behind the header.
  if (layout.root_size < layout.header_size + kMiB)
    return fail_at(storage.size.where,
                   "storage.size = \"{}\" leaves the root partition {}, no room behind its {} encryption header; "
                   "set storage.size = \"{}\"",
                   recipe_size(storage.size.value), format_size(layout.root_size), format_size(layout.header_size),
                   recipe_size(round_up(storage.size.value + layout.header_size + 64 * kMiB, 64 * kMiB)));
  layout.plaintext_size = whole_blocks(layout.root_size - layout.header_size);
  if (storage.layout.value == StorageLayout::kLvm) {
    uint64_t extent = storage.lvm.extent_size.value;
    uint64_t area = layout.plaintext_size > kLvmDefaultMetadata ? layout.plaintext_size - kLvmDefaultMetadata : 0;
    layout.volume_group_size = area / extent * extent;
    KILN_TRY(check_volumes_fit(storage, layout));
  }
  return layout;
}

}  // namespace kiln
