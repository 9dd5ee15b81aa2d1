#include "formats/disk/fat_image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <set>

#include "base/files.h"
#include "base/size.h"
#include "base/subprocess.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kSectorSize = 512;
// Below this, FAT32 cannot reach its minimum of 65525 clusters.
constexpr uint64_t kFat32MinimumSize = 33 * kMiB;
// FAT16 needs 4085 clusters, about 2.2 MiB of one-sector clusters; 4 MiB
// keeps a margin.
constexpr uint64_t kMinimumSize = 4 * kMiB;
// The largest FAT16 filesystem whose clusters can be one sector.
constexpr uint64_t kFat16SmallClusterLimit = 32 * kMiB;
constexpr size_t kMaxLabelLength = 11;
constexpr auto kToolTimeout = std::chrono::seconds(120);

// Everything that could make mtools' bytes depend on the host or the clock:
// its configuration (environment variables override the config files; HOME
// points at an empty directory so no ~/.mtoolsrc is read), the time zone (FAT
// stores local time) and the clock itself, which mtools 4.0.32 takes from
// SOURCE_DATE_EPOCH for every directory entry it writes.
std::vector<std::string> mtools_environment(const FatOptions& options, const fs::path& home) {
  return {
      "MTOOLSRC",  // unset
      "HOME=" + home.string(),
      "MTOOLS_SKIP_CHECK=1",
      "MTOOLS_NO_VFAT=0",
      "MTOOLS_NAME_NUMERIC_TAIL=1",
      "MTOOLS_FAT_COMPATIBILITY=0",
      "MTOOLS_LOWER_CASE=0",
      "MTOOLS_DEFAULT_CODEPAGE=850",
      "TZ=UTC",
      "LC_ALL=C.UTF-8",
      fmt::format("SOURCE_DATE_EPOCH={}", options.timestamp),
  };
}

Result<> check_options(const fs::path& image, const FatOptions& options) {
  // mtools reads "@@" in an image name as an offset; the scratch file lives
  // beside the image.
  if (fs::absolute(image).parent_path().string().find("@@") != std::string::npos)
    return fail(ErrorKind::kBadInput, "{}: mtools cannot work in a directory whose name contains '@@'",
                image.string());
  if (options.offset_bytes % kSectorSize != 0 || options.size_bytes % kSectorSize != 0)
    return fail(ErrorKind::kBadInput,
                "{}: FAT offset {} and size {} must be multiples of {} bytes", image.string(),
                options.offset_bytes, options.size_bytes, kSectorSize);
  if (options.size_bytes < kMinimumSize)
    return fail(ErrorKind::kBadInput, "{}: a {} FAT filesystem is too small; give it at least {}",
                image.string(), format_size(options.size_bytes), recipe_size(kMinimumSize));
  if (options.label.size() > kMaxLabelLength)
    return fail(ErrorKind::kBadInput, "FAT label '{}' is longer than {} characters",
                options.label, kMaxLabelLength);
  for (char c : options.label)
    if (c < 0x20 || c > 0x7e || std::string_view("\"*+,./:;<=>?[\\]|").find(c) != std::string_view::npos)
      return fail(ErrorKind::kBadInput,
                  "FAT label '{}' has the character '{}'; use letters, digits, '-' and '_'",
                  options.label, c);
  // FAT dates run from 1980-01-01 to 2107-12-31.
  if (options.timestamp < 315532800 || options.timestamp >= 4354819200)
    return fail(ErrorKind::kBadInput,
                "timestamp {} is outside 1980 to 2107, the dates FAT can store", options.timestamp);
  return {};
}

// Splits "EFI/BOOT/BOOTX64.EFI" into its components, refusing names FAT
// cannot hold and paths that climb or are empty.
Result<std::vector<std::string>> path_components(std::string_view path) {
  std::vector<std::string> parts;
  std::string_view rest = path;
  while (true) {
    auto slash = rest.find('/');
    std::string_view part = rest.substr(0, slash);
    if (part.empty() || part == "." || part == "..")
      return fail(ErrorKind::kBadInput,
                  "FAT path '{}' must be relative, like EFI/BOOT/BOOTX64.EFI, without empty, "
                  "'.' or '..' parts",
                  path);
    for (char c : part)
      if (static_cast<unsigned char>(c) < 0x20 ||
          std::string_view("\"*:<>?\\|").find(c) != std::string_view::npos)
        return fail(ErrorKind::kBadInput, "FAT path '{}' has the character '{}', which FAT forbids",
                    path, c);
    parts.emplace_back(part);
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  return parts;
}

// The directories to create, parents first, in the order files name them.
Result<std::vector<std::string>> directories_for(const std::vector<FatFile>& files) {
  std::vector<std::string> directories;
  std::set<std::string> seen_directories, seen_files;
  for (const FatFile& file : files) {
    KILN_ASSIGN(std::vector<std::string> parts, path_components(file.path));
    std::string prefix;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      prefix += (prefix.empty() ? "" : "/") + parts[i];
      if (seen_files.contains(prefix))
        return fail(ErrorKind::kBadInput, "FAT path '{}' is a file and a directory", prefix);
      if (seen_directories.insert(prefix).second) directories.push_back(prefix);
    }
    if (seen_directories.contains(file.path))
      return fail(ErrorKind::kBadInput, "FAT path '{}' is a file and a directory", file.path);
    if (!seen_files.insert(file.path).second)
      return fail(ErrorKind::kBadInput, "FAT path '{}' is given twice", file.path);
  }
  return directories;
}

// Copies the finished filesystem into the range of `image`, which is
// created or extended as needed; what the range held before is dropped first
// (copy_sparse skips holes, so they must read as zeros).
Result<> place_filesystem(const fs::path& filesystem, const fs::path& image,
                          const FatOptions& options) {
  KILN_ASSIGN(UniqueFd source, open_file(filesystem, O_RDONLY));
  KILN_ASSIGN(UniqueFd target, open_file(image, O_RDWR | O_CREAT));
  struct stat st;
  if (::fstat(target.get(), &st) != 0) return fail_errno("cannot stat", image.string(), errno);
  uint64_t end = options.offset_bytes + options.size_bytes;
  if (static_cast<uint64_t>(st.st_size) < end && ::ftruncate(target.get(), static_cast<off_t>(end)) != 0)
    return fail_errno("cannot extend", image.string(), errno);
  if (::fallocate(target.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  static_cast<off_t>(options.offset_bytes),
                  static_cast<off_t>(options.size_bytes)) != 0) {
    if (errno != EOPNOTSUPP) return fail_errno("cannot clear the FAT range of", image.string(), errno);
    std::string zeros(kMiB, '\0');
    for (uint64_t done = 0; done < options.size_bytes; done += zeros.size()) {
      size_t chunk = std::min<uint64_t>(zeros.size(), options.size_bytes - done);
      KILN_TRY(pwrite_all(target.get(), zeros.data(), chunk, options.offset_bytes + done,
                          image.string()));
    }
  }
  return copy_sparse(source.get(), 0, target.get(), options.offset_bytes, options.size_bytes,
                     image.string());
}

// Runs one mtools command; a failure names the image and what was being done.
Result<> run_mtools(std::vector<std::string> argv, const std::vector<std::string>& env,
                    std::string_view doing) {
  Command command;
  command.argv = std::move(argv);
  command.env = env;
  command.timeout = kToolTimeout;
  auto done = run(command);
  if (done) return {};
  Error error = std::move(done).error();
  if (error.detail.find("Disk full") != std::string::npos) error.kind = ErrorKind::kNoSpace;
  return std::unexpected(std::move(error).with_context(doing));
}

// The host file mcopy reads for `file`: its source, or its content written
// into `scratch`. Absolute, so mtools never takes "c:name" for a drive.
Result<fs::path> host_file(const FatFile& file, const fs::path& scratch, size_t index) {
  if (file.source.empty()) {
    // Scratch that mcopy reads once: no fsync, which would also wait for
    // the hundreds of megabytes of image the bake has just written.
    fs::path path = scratch / fmt::format("content-{}", index);
    KILN_ASSIGN(UniqueFd out, open_file(path, O_WRONLY | O_CREAT | O_EXCL, 0644));
    KILN_TRY(write_all(out.get(), file.content.data(), file.content.size(), path.string()));
    return path;
  }
  std::error_code ec;
  fs::path source = fs::absolute(file.source, ec);
  if (ec) return fail_errno("cannot resolve", file.source.string(), ec.value());
  if (!fs::is_regular_file(source, ec))
    return fail(ErrorKind::kBadInput, "{}: not a regular file (to be copied to {} on the FAT image)",
                source.string(), file.path);
  return source;
}

}  // namespace

std::string fat_volume_id_string(uint32_t volume_id) {
  return fmt::format("{:04X}-{:04X}", volume_id >> 16, volume_id & 0xffff);
}

Result<> write_fat_image(const fs::path& image, const FatOptions& options,
                         const std::vector<FatFile>& files) {
  KILN_TRY(check_options(image, options));
  KILN_ASSIGN(std::vector<std::string> directories, directories_for(files));
  fs::path parent = image.parent_path().empty() ? fs::path(".") : image.parent_path();
  KILN_ASSIGN(TempDir scratch, TempDir::create(parent, "fat"));
  std::vector<std::string> env = mtools_environment(options, scratch.path());
  std::string where = fmt::format("the FAT filesystem for {} at offset {}", image.string(),
                                  options.offset_bytes);

  std::vector<fs::path> sources;
  for (size_t i = 0; i < files.size(); ++i) {
    KILN_ASSIGN(fs::path source, host_file(files[i], scratch.path(), i));
    sources.push_back(std::move(source));
  }

  // mtools works on a file of exactly the filesystem's size: mformat writes
  // a partition entry into the boot sector sized from the file it is given,
  // which must not depend on what follows the range in the disk image. It
  // also leaves the image untouched until the filesystem is complete.
  fs::path filesystem = scratch.path() / "fat.img";
  {
    KILN_ASSIGN(UniqueFd fd, open_file(filesystem, O_RDWR | O_CREAT | O_EXCL));
    if (::ftruncate(fd.get(), static_cast<off_t>(options.size_bytes)) != 0)
      return fail_errno("cannot size", filesystem.string(), errno);
  }
  std::vector<std::string> mformat = {
      "mformat", "-i", filesystem.string(),
      "-T", std::to_string(options.size_bytes / kSectorSize),
      // Hidden sectors: where the filesystem starts on its disk, as firmware expects.
      "-H", std::to_string(options.offset_bytes / kSectorSize),
      "-N", fmt::format("{:08x}", options.volume_id)};
  if (!options.label.empty()) mformat.insert(mformat.end(), {"-v", options.label});
  if (options.size_bytes >= kFat32MinimumSize) {
    mformat.push_back("-F");
  } else {
    // Left to itself mformat picks FAT12 below 16 MiB, and with clusters too
    // small for FAT16 it switches to FAT32. One-sector clusters keep the count
    // between FAT16's limits (4085 to 65524) up to 32 MiB, two sectors above.
    mformat.insert(mformat.end(), {"-c", options.size_bytes <= kFat16SmallClusterLimit ? "1" : "2"});
  }
  mformat.push_back("::");
  KILN_TRY(run_mtools(mformat, env, fmt::format("formatting {}", where)));

  if (!directories.empty()) {
    std::vector<std::string> mmd = {"mmd", "-i", filesystem.string()};
    for (const std::string& directory : directories) mmd.push_back("::" + directory);
    KILN_TRY(run_mtools(mmd, env, fmt::format("creating directories in {}", where)));
  }
  for (size_t i = 0; i < files.size(); ++i) {
    KILN_TRY(run_mtools({"mcopy", "-i", filesystem.string(), sources[i].string(), "::" + files[i].path},
                        env, fmt::format("copying {} into {}", files[i].path, where)));
  }
  return place_filesystem(filesystem, image, options);
}

}  // namespace kiln
