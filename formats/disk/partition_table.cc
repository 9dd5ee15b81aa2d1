#include "formats/disk/partition_table.h"

#include <algorithm>
#include <memory>

#include <fmt/format.h>
#include <libfdisk/libfdisk.h>

namespace kiln {
namespace {

struct ContextDeleter {
  void operator()(fdisk_context* context) const { fdisk_unref_context(context); }
};
struct TableDeleter {
  void operator()(fdisk_table* table) const { fdisk_unref_table(table); }
};

std::string type_of(fdisk_partition* partition) {
  fdisk_parttype* type = fdisk_partition_get_type(partition);
  if (!type) return "";
  if (const char* guid = fdisk_parttype_get_string(type)) {
    std::string text = guid;
    std::ranges::transform(text, text.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    return text;
  }
  return fmt::format("0x{:02x}", fdisk_parttype_get_code(type));
}

}  // namespace

Result<PartitionTable> read_partition_table(const std::filesystem::path& image) {
  std::unique_ptr<fdisk_context, ContextDeleter> context(fdisk_new_context());
  if (!context) return fail(ErrorKind::kFailed, "{}: cannot create a libfdisk context", image.string());
  if (int rc = fdisk_assign_device(context.get(), image.c_str(), 1); rc != 0)
    return fail(ErrorKind::kBadInput, "{}: cannot read it as a disk image ({})", image.string(), rc);
  PartitionTable out;
  if (!fdisk_has_label(context.get())) return out;
  out.label = fdisk_label_get_name(fdisk_get_label(context.get(), nullptr));
  fdisk_table* raw = nullptr;
  if (fdisk_get_partitions(context.get(), &raw) != 0 || !raw)
    return fail(ErrorKind::kBadInput, "{}: cannot read its partition table", image.string());
  std::unique_ptr<fdisk_table, TableDeleter> table(raw);
  uint64_t sector = fdisk_get_sector_size(context.get());
  for (size_t i = 0; i < fdisk_table_get_nents(table.get()); ++i) {
    fdisk_partition* partition = fdisk_table_get_partition(table.get(), i);
    if (!partition || !fdisk_partition_has_start(partition) || !fdisk_partition_has_size(partition)) continue;
    const char* name = fdisk_partition_get_name(partition);
    out.partitions.push_back({static_cast<int>(fdisk_partition_get_partno(partition)) + 1,
                              fdisk_partition_get_start(partition) * sector,
                              fdisk_partition_get_size(partition) * sector, name ? name : "", type_of(partition)});
  }
  fdisk_deassign_device(context.get(), 1);
  std::ranges::sort(out.partitions, {}, &TablePartition::number);
  return out;
}

}  // namespace kiln
