#include "formats/disk/gpt_disk.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include <libfdisk/libfdisk.h>

#include "base/files.h"
#include "base/size.h"

namespace kiln {
namespace {

constexpr uint64_t kSectorSize = 512;
constexpr size_t kMaxPartitions = 128;
// GPT names are 36 UTF-16 code units.
constexpr size_t kMaxNameCharacters = 36;

size_t utf8_characters(std::string_view text) {
  size_t count = 0;
  for (unsigned char c : text)
    if ((c & 0xc0) != 0x80) ++count;
  return count;
}

std::string describe(const GptPartition& partition, size_t index) {
  if (partition.name.empty()) return fmt::format("partition {}", index + 1);
  return fmt::format("partition {} ({})", index + 1, partition.name);
}

Result<> check_layout(const GptLayout& layout) {
  if (layout.disk_size == 0 || layout.disk_size % kSectorSize != 0)
    return fail(ErrorKind::kBadInput,
                "disk size {} is not a positive multiple of {} bytes: give a size such as {}",
                layout.disk_size, kSectorSize, recipe_size(std::max(layout.disk_size, kMiB)));
  if (layout.partitions.size() > kMaxPartitions)
    return fail(ErrorKind::kBadInput, "{} partitions asked for, but a GPT holds at most {}",
                layout.partitions.size(), kMaxPartitions);
  for (size_t i = 0; i < layout.partitions.size(); ++i) {
    const GptPartition& partition = layout.partitions[i];
    if (partition.size_bytes == 0 && i + 1 != layout.partitions.size())
      return fail(ErrorKind::kBadInput,
                  "{} has no size, but only the last partition may take the rest of the disk",
                  describe(partition, i));
    if (utf8_characters(partition.name) > kMaxNameCharacters)
      return fail(ErrorKind::kBadInput, "{}: a GPT partition name holds at most {} characters",
                  describe(partition, i), kMaxNameCharacters);
  }
  return {};
}

// libfdisk reports through a dialog callback; kiln never answers questions,
// and keeps warnings so a failure can show them.
int collect_messages(fdisk_context*, fdisk_ask* ask, void* data) {
  auto* messages = static_cast<std::string*>(data);
  switch (fdisk_ask_get_type(ask)) {
    case FDISK_ASKTYPE_INFO:
      return 0;
    case FDISK_ASKTYPE_WARN:
    case FDISK_ASKTYPE_WARNX: {
      const char* text = fdisk_ask_print_get_mesg(ask);
      if (!messages->empty()) *messages += '\n';
      *messages += text ? text : "";
      if (int err = fdisk_ask_print_get_errno(ask); err != 0)
        *messages += fmt::format(": {}", std::strerror(err));
      return 0;
    }
    default:
      return -EINVAL;
  }
}

struct ContextDeleter {
  void operator()(fdisk_context* context) const { fdisk_unref_context(context); }
};
struct PartitionDeleter {
  void operator()(fdisk_partition* partition) const { fdisk_unref_partition(partition); }
};
using ContextPtr = std::unique_ptr<fdisk_context, ContextDeleter>;
using PartitionPtr = std::unique_ptr<fdisk_partition, PartitionDeleter>;

// A libfdisk failure on `disk`: the call, its errno and any warnings it gave.
std::unexpected<Error> fdisk_failure(const std::filesystem::path& disk, std::string_view what,
                                     int rc, const std::string& messages) {
  Error error{ErrorKind::kFailed,
              fmt::format("{}: {}: {}", disk.string(), what, std::strerror(rc < 0 ? -rc : rc)),
              {},
              messages};
  return std::unexpected(std::move(error));
}

// Opens the image, creating it sparse or extending it to the disk size.
Result<UniqueFd> open_disk(const std::filesystem::path& disk, uint64_t disk_size) {
  KILN_ASSIGN(UniqueFd fd, open_file(disk, O_RDWR | O_CREAT));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return fail_errno("cannot stat", disk.string(), errno);
  if (!S_ISREG(st.st_mode))
    return fail(ErrorKind::kBadInput, "{}: not a regular file; kiln writes GPT disk images only",
                disk.string());
  uint64_t current = static_cast<uint64_t>(st.st_size);
  if (current > disk_size)
    return fail(ErrorKind::kBadInput,
                "{}: the file is {} bytes, larger than the {} byte disk of the layout; "
                "remove it or give the layout its size",
                disk.string(), current, disk_size);
  if (current < disk_size && ::ftruncate(fd.get(), static_cast<off_t>(disk_size)) != 0)
    return fail_errno("cannot extend", disk.string(), errno);
  return fd;
}

Result<> add_partition(fdisk_context* context, const std::filesystem::path& disk,
                       const PlacedPartition& placed, const std::string& messages) {
  PartitionPtr partition(fdisk_new_partition());
  if (!partition) return fail(ErrorKind::kFailed, "{}: out of memory", disk.string());
  fdisk_parttype* type = fdisk_label_parse_parttype(
      fdisk_get_label(context, nullptr), std::string(gpt_type_guid(placed.partition.type)).c_str());
  if (!type)
    return fail(ErrorKind::kFailed, "{}: libfdisk does not know the GPT type {}", disk.string(),
                gpt_type_guid(placed.partition.type));
  int rc = fdisk_partition_set_type(partition.get(), type);
  fdisk_unref_parttype(type);  // the partition holds its own reference
  if (rc == 0) rc = fdisk_partition_set_partno(partition.get(), placed.number - 1);
  if (rc == 0) rc = fdisk_partition_set_start(partition.get(), placed.offset / kSectorSize);
  if (rc == 0) rc = fdisk_partition_set_size(partition.get(), placed.size / kSectorSize);
  // Otherwise libfdisk rounds the end down to its grain, shrinking the
  // rest-of-disk partition below what plan_gpt promised.
  if (rc == 0) rc = fdisk_partition_size_explicit(partition.get(), 1);
  if (rc == 0) rc = fdisk_partition_set_name(partition.get(), placed.partition.name.c_str());
  if (rc == 0)
    rc = fdisk_partition_set_uuid(partition.get(), placed.partition.uuid.to_string().c_str());
  if (rc == 0) rc = fdisk_add_partition(context, partition.get(), nullptr);
  if (rc != 0)
    return fdisk_failure(disk, fmt::format("cannot add {}", describe(placed.partition, placed.number - 1)),
                         rc, messages);
  return {};
}

}  // namespace

std::string_view gpt_type_guid(GptType type) {
  switch (type) {
    case GptType::kEfiSystem: return "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
    case GptType::kLinuxRootX86_64: return "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
    case GptType::kLinuxFilesystem: return "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
    case GptType::kLinuxSwap: return "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F";
    case GptType::kLinuxLvm: return "E6D6D379-F507-44C2-A23C-238F2A3DF928";
    case GptType::kLinuxLuks: return "CA7D7CCB-63ED-4C53-861C-1742536059CC";
  }
  return {};
}

Result<std::vector<PlacedPartition>> plan_gpt(const GptLayout& layout) {
  KILN_TRY(check_layout(layout));
  uint64_t usable_end = layout.disk_size > kGptBackupTableBytes ? layout.disk_size - kGptBackupTableBytes : 0;
  std::vector<PlacedPartition> placed;
  uint64_t offset = kGptAlignment;  // the primary table lives below the first MiB
  bool takes_rest = false;
  for (size_t i = 0; i < layout.partitions.size(); ++i) {
    const GptPartition& partition = layout.partitions[i];
    PlacedPartition place{partition, static_cast<int>(i + 1), offset, 0};
    if (partition.size_bytes == 0) {
      takes_rest = true;
      place.size = usable_end > offset ? usable_end - offset : 0;
    } else {
      // Whole MiB, so every following partition starts aligned too.
      place.size = round_up(partition.size_bytes, kGptAlignment);
    }
    offset += takes_rest ? 0 : place.size;
    placed.push_back(std::move(place));
  }
  // A rest-of-disk partition needs at least one aligned MiB of its own.
  uint64_t required = offset + (takes_rest ? kGptAlignment : 0) + kGptBackupTableBytes;
  if (required > layout.disk_size) {
    uint64_t needed = round_up(required, kGptAlignment);
    return fail(ErrorKind::kNoSpace,
                "the partitions do not fit on a {} disk ({} bytes): they need {} ({} bytes) "
                "with the GPT; make the disk at least {}",
                format_size(layout.disk_size), layout.disk_size, format_size(needed), needed,
                recipe_size(needed));
  }
  return placed;
}

Result<std::vector<PlacedPartition>> write_gpt(const std::filesystem::path& disk,
                                               const GptLayout& layout) {
  KILN_ASSIGN(std::vector<PlacedPartition> placed, plan_gpt(layout));
  KILN_ASSIGN(UniqueFd fd, open_disk(disk, layout.disk_size));

  ContextPtr context(fdisk_new_context());
  if (!context) return fail(ErrorKind::kFailed, "{}: cannot create a libfdisk context", disk.string());
  std::string messages;
  fdisk_set_ask(context.get(), collect_messages, &messages);
  // Fixed geometry: the table must not depend on what the host reports.
  fdisk_save_user_sector_size(context.get(), kSectorSize, kSectorSize);
  fdisk_save_user_grain(context.get(), kGptAlignment);

  int rc = fdisk_assign_device_by_fd(context.get(), fd.get(), disk.c_str(), 0);
  if (rc != 0) return fdisk_failure(disk, "cannot open for partitioning", rc, messages);
  rc = fdisk_create_disklabel(context.get(), "gpt");
  if (rc != 0) return fdisk_failure(disk, "cannot create a GPT label", rc, messages);
  // libfdisk picks random GUIDs unless told; equal layouts must give equal bytes.
  rc = fdisk_set_disklabel_id_from_string(context.get(), layout.disk_guid.to_string().c_str());
  if (rc != 0) return fdisk_failure(disk, "cannot set the disk GUID", rc, messages);
  for (const PlacedPartition& partition : placed)
    KILN_TRY(add_partition(context.get(), disk, partition, messages));
  rc = fdisk_write_disklabel(context.get());
  if (rc != 0) return fdisk_failure(disk, "cannot write the partition table", rc, messages);
  // deassign fsyncs; the descriptor stays ours to close. No partition table
  // re-read happens: that is only attempted for block devices.
  rc = fdisk_deassign_device(context.get(), 1);
  if (rc != 0) return fdisk_failure(disk, "cannot flush the partition table", rc, messages);
  return placed;
}

}  // namespace kiln
