#include "formats/ext4/ext4_image.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <type_traits>

#include "base/files.h"
#include "base/size.h"
#include "base/subprocess.h"
#include "base/uuid.h"
#include "formats/ext4/ext4_fs.h"
#include "formats/ext4/ext4_sizing.h"

namespace kiln {
namespace {

using ext4::entries_of;
using ext4::Filesystem;
using ext4::Inode;
using ext4::NameList;
using ext4::read_content;

// kiln's filesystems, whatever the host's /etc/mke2fs.conf says: the values
// of Debian 12's mke2fs.conf, given explicitly.
constexpr uint32_t kBlockSize = 4096;
constexpr uint32_t kInodeSize = 256;
constexpr uint64_t kBytesPerInode = 16384;
constexpr std::string_view kReservedPercent = "5";
constexpr uint64_t kMinimumSize = kMiB;
constexpr size_t kMaxLabelLength = 16;
// minimum_size() gives up after this many trial formats (it needs 1 to 3).
constexpr int kMaxSizingRounds = 32;

// Debian 12's feature sets. Not metadata_csum_seed (GRUB 2.06 refuses to
// read a filesystem with it) nor orphan_file (Debian 12 leaves it off for
// older kernels and tools); both are checked by the tests' e2fsck.
constexpr std::string_view kExt2Features =
    "sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr";
constexpr std::string_view kJournalFeatures = "has_journal";
constexpr std::string_view kExt4Features =
    "extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize";

// The whole mke2fs configuration: features come from -O, sizes from the
// command line; these are only the defaults kiln does not pass as flags.
constexpr std::string_view kMke2fsConfig = R"([defaults]
	base_features = none
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0

[fs_types]
	ext3 = {
		features = none
	}
	ext4 = {
		features = none
	}
	kiln = {
		inode_ratio = 16384
	}
)";

Result<std::string> features_for(std::string_view fs_type) {
  if (fs_type == "ext2") return std::string(kExt2Features);
  if (fs_type == "ext3") return fmt::format("{},{}", kExt2Features, kJournalFeatures);
  if (fs_type == "ext4")
    return fmt::format("{},{},{}", kExt2Features, kJournalFeatures, kExt4Features);
  return fail(ErrorKind::kBadInput, "filesystem type '{}' is not one of ext4, ext3, ext2",
              fs_type);
}

ext4::Geometry geometry_for(std::string_view fs_type) {
  bool ext4 = fs_type == "ext4";
  return {kBlockSize, kInodeSize, ext4, ext4};
}

Result<> check_options(const Ext4Options& options, bool need_size) {
  KILN_TRY(features_for(options.fs_type));
  const uint64_t minimum = ext4_minimum_size(options.fs_type);
  if (need_size && (options.size_bytes < minimum || options.size_bytes % kBlockSize != 0))
    return fail(ErrorKind::kBadInput,
                "an {} filesystem of {} bytes: the size must be a multiple of {} and at least {}{}; for example {}",
                options.fs_type, options.size_bytes, kBlockSize, format_size(minimum),
                options.fs_type == "ext2" ? "" : " (its journal needs it)",
                recipe_size(round_up(std::max(options.size_bytes, minimum), kBlockSize)));
  if (options.label.size() > kMaxLabelLength)
    return fail(ErrorKind::kBadInput, "filesystem label '{}' is longer than {} bytes",
                options.label, kMaxLabelLength);
  if (options.timestamp <= 0)
    return fail(ErrorKind::kBadInput,
                "the filesystem timestamp must be a positive Unix time (SOURCE_DATE_EPOCH), "
                "not {}",
                options.timestamp);
  return {};
}

// Creates or extends the image so the filesystem's range exists, and
// punches that range to zeros. Returns whether punching worked: then mke2fs
// may skip zeroing the inode tables and the journal.
Result<bool> prepare_image(const std::filesystem::path& image, const Ext4Options& options) {
  KILN_ASSIGN(UniqueFd fd, open_file(image, O_RDWR | O_CREAT | O_CLOEXEC));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return fail_errno("cannot stat", image.string(), errno);
  if (!S_ISREG(st.st_mode))
    return fail(ErrorKind::kBadInput, "{}: not a regular file; kiln writes ext4 into image files",
                image.string());
  uint64_t end = options.offset_bytes + options.size_bytes;
  if (static_cast<uint64_t>(st.st_size) < end &&
      ::ftruncate(fd.get(), static_cast<off_t>(end)) != 0)
    return fail_errno("cannot extend", image.string(), errno);
  return ::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                     static_cast<off_t>(options.offset_bytes),
                     static_cast<off_t>(options.size_bytes)) == 0;
}

Result<> run_mke2fs(const std::filesystem::path& image, const Ext4Options& options, bool zeroed) {
  KILN_ASSIGN(std::string mke2fs, find_program("mke2fs"));
  KILN_ASSIGN(std::string features, features_for(options.fs_type));
  KILN_ASSIGN(TempDir scratch, TempDir::create(std::filesystem::temp_directory_path(), "kiln-mke2fs"));
  std::filesystem::path config = scratch.path() / "mke2fs.conf";
  KILN_TRY(write_file_atomic(config, kMke2fsConfig));

  std::string extended = fmt::format("hash_seed={},root_owner=0:0", options.hash_seed.to_string());
  if (zeroed) extended += ",lazy_itable_init=1,lazy_journal_init=1";
  if (options.offset_bytes != 0) extended += fmt::format(",offset={}", options.offset_bytes);
  Command command;
  command.argv = {mke2fs, "-q", "-F", "-t", options.fs_type, "-T", "kiln",
                  "-b", std::to_string(kBlockSize), "-I", std::to_string(kInodeSize),
                  "-i", std::to_string(kBytesPerInode), "-m", std::string(kReservedPercent),
                  "-O", "none," + features, "-U", options.uuid.to_string(),
                  "-E", extended};
  if (!options.label.empty()) command.argv.insert(command.argv.end(), {"-L", options.label});
  command.argv.push_back(image.string());
  command.argv.push_back(std::to_string(options.size_bytes / kBlockSize));
  command.env = {"MKE2FS_CONFIG=" + config.string(),
                 fmt::format("E2FSPROGS_FAKE_TIME={}", options.timestamp),
                 "E2FSPROGS_LIBMAGIC_SUPPRESS=1", "LC_ALL=C"};
  if (auto done = run(command); !done)
    return std::unexpected(std::move(done).error().with_context(
        fmt::format("{}: cannot create the {} filesystem", image.string(), options.fs_type)));
  return {};
}

std::unexpected<Error> not_found(const Filesystem& fs, std::string_view path) {
  return fail(ErrorKind::kBadInput, "{}: no such file or directory in the image {}", path,
              fs.name());
}

Result<> check_absolute(std::string_view path) {
  if (!path.starts_with('/'))
    return fail(ErrorKind::kBadInput, "{}: paths inside the image must be absolute (\"/etc/...\")",
                path);
  return {};
}

// The inode at `path`, following symlinks on the way (and at the end when
// `follow`); nullopt when nothing is there.
Result<std::optional<ext2_ino_t>> find(const Filesystem& fs, std::string_view path, bool follow) {
  KILN_TRY(check_absolute(path));
  std::string text(path);
  ext2_ino_t ino = 0;
  errcode_t rc = follow ? ext2fs_namei_follow(fs.get(), EXT2_ROOT_INO, EXT2_ROOT_INO, text.c_str(), &ino)
                        : ext2fs_namei(fs.get(), EXT2_ROOT_INO, EXT2_ROOT_INO, text.c_str(), &ino);
  if (rc == EXT2_ET_FILE_NOT_FOUND || rc == EXT2_ET_NO_DIRECTORY) return std::nullopt;
  if (rc != 0) return ext4::failure(rc, fs.name(), fmt::format("cannot look up {}", path));
  return ino;
}

Result<ext2_ino_t> require(const Filesystem& fs, std::string_view path, bool follow) {
  KILN_ASSIGN(std::optional<ext2_ino_t> ino, find(fs, path, follow));
  if (!ino) return not_found(fs, path);
  return *ino;
}

// Where a new name goes: its directory (symlinks followed) and the name.
struct Place {
  ext2_ino_t directory = 0;
  std::string name;
  std::optional<ext2_ino_t> existing;
};

Result<Place> place_of(const Filesystem& fs, std::string_view path) {
  KILN_TRY(check_absolute(path));
  std::string_view trimmed = path;
  while (trimmed.size() > 1 && trimmed.ends_with('/')) trimmed.remove_suffix(1);
  size_t slash = trimmed.rfind('/');
  Place out;
  out.name = std::string(trimmed.substr(slash + 1));
  if (out.name.empty() || out.name == "." || out.name == "..")
    return fail(ErrorKind::kBadInput, "{}: names no entry that can be created or removed", path);
  if (out.name.size() > ext4::kMaxNameLength)
    return fail(ErrorKind::kBadInput, "{}: the name is longer than {} bytes", path,
                ext4::kMaxNameLength);
  std::string_view parent = slash == 0 ? "/" : trimmed.substr(0, slash);
  KILN_ASSIGN(std::optional<ext2_ino_t> directory, find(fs, parent, true));
  if (!directory) return not_found(fs, parent);
  KILN_ASSIGN(Inode inode, fs.read_inode(*directory, parent));
  if (!LINUX_S_ISDIR(inode->i_mode))
    return fail(ErrorKind::kBadInput, "{}: not a directory in the image {}", parent, fs.name());
  out.directory = *directory;
  ext2_ino_t ino = 0;
  errcode_t rc = ext2fs_lookup(fs.get(), out.directory, out.name.c_str(),
                               static_cast<int>(out.name.size()), nullptr, &ino);
  if (rc == 0) out.existing = ino;
  else if (rc != EXT2_ET_FILE_NOT_FOUND)
    return ext4::failure(rc, fs.name(), fmt::format("cannot look up {}", path));
  return out;
}

Result<> link_entry(Filesystem& fs, ext2_ino_t directory, const std::string& name, ext2_ino_t ino,
                    uint8_t type, std::string_view path) {
  errcode_t rc = ext2fs_link(fs.get(), directory, name.c_str(), ino, type);
  if (rc == EXT2_ET_DIR_NO_SPACE) {
    rc = ext2fs_expand_dir(fs.get(), directory);
    if (rc == 0) rc = ext2fs_link(fs.get(), directory, name.c_str(), ino, type);
  }
  if (rc != 0) return ext4::failure(rc, fs.name(), fmt::format("cannot add {}", path));
  return {};
}

// Adds or removes one ".." link to a directory (dir_nlink: 1 stays 1).
Result<> adjust_directory_links(Filesystem& fs, ext2_ino_t directory, int delta,
                                std::string_view path) {
  KILN_ASSIGN(Inode inode, fs.read_inode(directory, path));
  if (inode->i_links_count == 1) return {};
  uint32_t links = inode->i_links_count + delta;
  inode->i_links_count = static_cast<__u16>(links >= EXT2_LINK_MAX ? 1 : links);
  return fs.write_inode(directory, inode, path);
}

Result<> remove_entry(Filesystem& fs, ext2_ino_t directory, const std::string& name,
                      ext2_ino_t ino, const std::string& path, bool recursive) {
  KILN_ASSIGN(Inode inode, fs.read_inode(ino, path));
  bool is_directory = LINUX_S_ISDIR(inode->i_mode);
  if (is_directory) {
    KILN_ASSIGN(NameList children, entries_of(fs, ino, path));
    if (!children.entries.empty() && !recursive)
      return fail(ErrorKind::kBadInput, "{}: directory not empty in the image {}", path, fs.name());
    for (const auto& [child, child_ino] : children.entries)
      KILN_TRY(remove_entry(fs, ino, child, child_ino, path + "/" + child, true));
  }
  if (errcode_t rc = ext2fs_unlink(fs.get(), directory, name.c_str(), ino, 0); rc != 0)
    return ext4::failure(rc, fs.name(), fmt::format("cannot remove {}", path));
  if (!is_directory) return fs.drop_link(ino, path);
  KILN_TRY(fs.release_inode(ino, path));
  return adjust_directory_links(fs, directory, -1, path);
}

}  // namespace

struct Ext4Image::State {
  std::unique_ptr<Filesystem> fs;
  // A filesystem format() made lives in a file its caller has yet to
  // publish (an output's staging, an AtomicFile): syncing it at close
  // would wait for every block the import wrote, for no one's benefit.
  // One opened in place is synced.
  Filesystem::Flush flush = Filesystem::Flush::kSync;
  // Set when a failed import left the filesystem inconsistent.
  std::string broken;

  Result<Filesystem*> usable(bool write) {
    if (!fs) return fail(ErrorKind::kFailed, "the ext4 image was already closed");
    if (!broken.empty())
      return fail(ErrorKind::kFailed, "{}: unusable after a failed import ({})", fs->name(), broken);
    if (write && !fs->writable())
      return fail(ErrorKind::kFailed, "{}: opened read-only", fs->name());
    return fs.get();
  }
};

Ext4Image::Ext4Image(std::unique_ptr<State> state) : state_(std::move(state)) {}
Ext4Image::Ext4Image(Ext4Image&&) noexcept = default;
Ext4Image& Ext4Image::operator=(Ext4Image&&) noexcept = default;
Ext4Image::~Ext4Image() = default;

uint64_t ext4_minimum_size(std::string_view fs_type) {
  return fs_type == "ext2" ? kMinimumSize : 2048 * kBlockSize;
}

Result<Ext4Image> Ext4Image::format(const std::filesystem::path& image, const Ext4Options& options) {
  KILN_TRY(check_options(options, true));
  KILN_ASSIGN(bool zeroed, prepare_image(image, options));
  KILN_TRY(run_mke2fs(image, options, zeroed));
  auto state = std::make_unique<State>();
  KILN_ASSIGN(state->fs, Filesystem::open(image, options.offset_bytes, true, options.timestamp));
  state->flush = Filesystem::Flush::kNoSync;
  return Ext4Image(std::move(state));
}

Result<Ext4Image> Ext4Image::open(const std::filesystem::path& image, uint64_t offset_bytes,
                                  bool writable) {
  auto state = std::make_unique<State>();
  KILN_ASSIGN(state->fs, Filesystem::open(image, offset_bytes, writable, 0));
  return Ext4Image(std::move(state));
}

Result<uint64_t> Ext4Image::minimum_size(const std::filesystem::path& archive,
                                         const Ext4Options& options) {
  KILN_TRY(check_options(options, false));
  KILN_ASSIGN(TarReader reader, TarReader::open(archive));
  KILN_ASSIGN(ext4::SpaceNeeds needs, ext4::measure_archive(reader, geometry_for(options.fs_type)));

  // The filesystem's own overhead (tables, journal, reserved descriptor
  // blocks) depends on its size in steps, so ask mke2fs: format a sparse
  // scratch image, read its free counts, grow by the shortfall, repeat.
  // Growing from below never skips a size that fits.
  KILN_ASSIGN(TempDir scratch, TempDir::create(std::filesystem::temp_directory_path(), "kiln-ext4-size"));
  std::filesystem::path probe = scratch.path() / "probe.img";
  Ext4Options trial = options;
  trial.offset_bytes = 0;
  trial.size_bytes = std::max(ext4_minimum_size(options.fs_type), round_up(needs.blocks * kBlockSize, kMiB));
  for (int round = 0; round < kMaxSizingRounds; ++round) {
    std::error_code ignored;
    std::filesystem::remove(probe, ignored);
    KILN_ASSIGN(bool zeroed, prepare_image(probe, trial));
    KILN_TRY(run_mke2fs(probe, trial, zeroed));
    KILN_ASSIGN(auto fs, Filesystem::open(probe, 0, false, trial.timestamp));
    uint64_t free_blocks = ext2fs_free_blocks_count(fs->get()->super);
    uint64_t free_inodes = fs->get()->super->s_free_inodes_count;
    if (free_blocks >= needs.blocks && free_inodes >= needs.inodes) return trial.size_bytes;
    uint64_t short_blocks = needs.blocks > free_blocks ? needs.blocks - free_blocks : 0;
    uint64_t short_inodes = needs.inodes > free_inodes ? needs.inodes - free_inodes : 0;
    trial.size_bytes += round_up(
        std::max(short_blocks * kBlockSize, short_inodes * kBytesPerInode), kMiB);
  }
  return fail(ErrorKind::kFailed, "{}: could not find an ext4 size that holds it", archive.string());
}

Result<ImportStats> Ext4Image::import(TarReader& reader, const ImportOptions& options) {
  KILN_ASSIGN(Filesystem * fs, state_->usable(true));
  auto stats = ext4::import_archive(*fs, reader, options);
  if (!stats) state_->broken = stats.error().message;
  return stats;
}

Result<ExportStats> Ext4Image::export_archive(const std::filesystem::path& archive,
                                              const std::function<void(uint64_t, uint64_t)>& progress) {
  KILN_ASSIGN(Filesystem * fs, state_->usable(false));
  return ext4::export_archive(*fs, archive, progress);
}

Result<std::optional<Ext4Stat>> Ext4Image::stat(std::string_view path) {
  KILN_ASSIGN(Filesystem * fs, state_->usable(false));
  KILN_ASSIGN(std::optional<ext2_ino_t> ino, find(*fs, path, false));
  if (!ino) return std::nullopt;
  KILN_ASSIGN(Inode inode, fs->read_inode(*ino, path));
  Ext4Stat out;
  out.type = ext4::entry_type_of(inode->i_mode);
  out.mode = inode->i_mode & 07777;
  out.uid = inode.uid();
  out.gid = inode.gid();
  out.size = EXT2_I_SIZE(inode.base());
  out.links = inode->i_links_count;
  out.mtime = inode.mtime();
  if (out.type == EntryType::kSymlink) {
    KILN_ASSIGN(out.symlink_target, read_content(*fs, *ino, inode, path));
  }
  return out;
}

Result<std::string> Ext4Image::read_file(std::string_view path) {
  KILN_ASSIGN(Filesystem * fs, state_->usable(false));
  KILN_ASSIGN(ext2_ino_t ino, require(*fs, path, true));
  KILN_ASSIGN(Inode inode, fs->read_inode(ino, path));
  if (!LINUX_S_ISREG(inode->i_mode))
    return fail(ErrorKind::kBadInput, "{}: not a regular file in the image {}", path, fs->name());
  return read_content(*fs, ino, inode, path);
}

namespace {

// Copies [from, from + length) of the filesystem's blocks starting at
// `physical` to `fd` at `at`, through `buffer`.
Result<> copy_blocks(const Filesystem& fs, uint64_t physical, uint64_t length, int fd, uint64_t at,
                     std::string& buffer, std::string_view path) {
  const uint64_t block = fs.get()->blocksize;
  while (length > 0) {
    uint64_t blocks = std::min<uint64_t>((length + block - 1) / block, buffer.size() / block);
    if (errcode_t rc = io_channel_read_blk64(fs.get()->io, physical, static_cast<int>(blocks), buffer.data()); rc != 0)
      return ext4::failure(rc, fs.name(), fmt::format("cannot read {}", path));
    uint64_t bytes = std::min(length, blocks * block);
    for (uint64_t done = 0; done < bytes;) {
      ssize_t wrote = ::pwrite(fd, buffer.data() + done, bytes - done, static_cast<off_t>(at + done));
      if (wrote < 0 && errno == EINTR) continue;
      if (wrote <= 0) return fail_errno("cannot write a copy of", std::string(path), errno);
      done += static_cast<uint64_t>(wrote);
    }
    physical += blocks;
    at += bytes;
    length -= bytes;
  }
  return {};
}

}  // namespace

Result<> Ext4Image::copy_file_to(std::string_view path, int fd) {
  KILN_ASSIGN(Filesystem * fs, state_->usable(false));
  KILN_ASSIGN(ext2_ino_t ino, require(*fs, path, true));
  KILN_ASSIGN(Inode inode, fs->read_inode(ino, path));
  if (!LINUX_S_ISREG(inode->i_mode))
    return fail(ErrorKind::kBadInput, "{}: not a regular file in the image {}", path, fs->name());
  const uint64_t size = EXT2_I_SIZE(inode.base());
  ext2_extent_handle_t handle = nullptr;
  if (!(inode->i_flags & EXT4_EXTENTS_FL) || ext2fs_extent_open2(fs->get(), ino, inode.base(), &handle) != 0) {
    KILN_ASSIGN(std::string content, read_content(*fs, ino, inode, path));
    if (::lseek(fd, 0, SEEK_SET) < 0) return fail_errno("cannot write a copy of", std::string(path), errno);
    KILN_TRY(write_all(fd, content.data(), content.size(), std::string(path)));
    if (::ftruncate(fd, static_cast<off_t>(content.size())) != 0)
      return fail_errno("cannot size a copy of", std::string(path), errno);
    return {};
  }
  std::unique_ptr<std::remove_pointer_t<ext2_extent_handle_t>, decltype(&ext2fs_extent_free)> owned(
      handle, ext2fs_extent_free);
  std::string buffer(4 << 20, '\0');
  const uint64_t block = fs->get()->blocksize;
  for (int op = EXT2_EXTENT_ROOT;; op = EXT2_EXTENT_NEXT) {
    ext2fs_extent extent{};
    errcode_t rc = ext2fs_extent_get(handle, op, &extent);
    if (rc == EXT2_ET_EXTENT_NO_NEXT) break;
    if (rc != 0) return ext4::failure(rc, fs->name(), fmt::format("cannot read the extents of {}", path));
    // Holes and unwritten extents read as zeros: the file's size (below)
    // leaves them so.
    if (!(extent.e_flags & EXT2_EXTENT_FLAGS_LEAF) || (extent.e_flags & EXT2_EXTENT_FLAGS_UNINIT)) continue;
    uint64_t start = extent.e_lblk * block;
    if (start >= size) continue;
    uint64_t length = std::min<uint64_t>(uint64_t{extent.e_len} * block, size - start);
    KILN_TRY(copy_blocks(*fs, extent.e_pblk, length, fd, start, buffer, path));
  }
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) return fail_errno("cannot size a copy of", std::string(path), errno);
  return {};
}

Result<std::vector<std::string>> Ext4Image::list_directory(std::string_view path) {
  KILN_ASSIGN(Filesystem * fs, state_->usable(false));
  KILN_ASSIGN(ext2_ino_t ino, require(*fs, path, true));
  KILN_ASSIGN(Inode inode, fs->read_inode(ino, path));
  if (!LINUX_S_ISDIR(inode->i_mode))
    return fail(ErrorKind::kBadInput, "{}: not a directory in the image {}", path, fs->name());
  KILN_ASSIGN(NameList list, entries_of(*fs, ino, path));
  std::vector<std::string> names;
  for (auto& [name, child] : list.entries) names.push_back(std::move(name));
  std::sort(names.begin(), names.end());
  return names;
}

Result<> Ext4Image::write_file(std::string_view path, std::string_view content,
                               const Ext4Attributes& attributes) {
  KILN_ASSIGN(Filesystem * fs, state_->usable(true));
  KILN_ASSIGN(Place place, place_of(*fs, path));
  std::string where(path);
  if (place.existing) {
    KILN_ASSIGN(Inode inode, fs->read_inode(*place.existing, path));
    if (LINUX_S_ISDIR(inode->i_mode))
      return fail(ErrorKind::kBadInput, "{}: is a directory in the image {}", path, fs->name());
    if (LINUX_S_ISREG(inode->i_mode)) {
      // Same inode: owner, mode, links and attributes stay.
      KILN_TRY(fs->release_blocks(*place.existing, inode, path));
      ext4::ContentWriter writer(*fs, where);
      KILN_TRY(writer.write(0, content.data(), content.size()));
      KILN_ASSIGN(std::vector<ext4::Extent> extents, writer.finish());
      KILN_TRY(fs->attach(*place.existing, inode, extents, path));
      if (errcode_t rc = ext2fs_inode_size_set(fs->get(), inode.base(), content.size()); rc != 0)
        return ext4::failure(rc, fs->name(), fmt::format("cannot set the size of {}", path));
      inode.set_times(attributes.mtime, 0);
      return fs->write_inode(*place.existing, inode, path);
    }
    // A symlink or special file is replaced, not written through.
    KILN_TRY(remove_entry(*fs, place.directory, place.name, *place.existing, where, false));
  }
  KILN_ASSIGN(ext2_ino_t ino, fs->allocate_inode(place.directory, false, path));
  Inode inode = fs->new_inode_buffer();
  inode->i_mode = static_cast<__u16>(LINUX_S_IFREG | (attributes.mode & 07777));
  inode.set_owner(attributes.uid, attributes.gid);
  inode.set_times(attributes.mtime, 0);
  inode->i_links_count = 1;
  ext4::ContentWriter writer(*fs, where);
  KILN_TRY(writer.write(0, content.data(), content.size()));
  KILN_ASSIGN(std::vector<ext4::Extent> extents, writer.finish());
  KILN_TRY(fs->attach(ino, inode, extents, path));
  if (errcode_t rc = ext2fs_inode_size_set(fs->get(), inode.base(), content.size()); rc != 0)
    return ext4::failure(rc, fs->name(), fmt::format("cannot set the size of {}", path));
  KILN_TRY(fs->write_inode(ino, inode, path));
  return link_entry(*fs, place.directory, place.name, ino, EXT2_FT_REG_FILE, path);
}

Result<> Ext4Image::make_directory(std::string_view path, const Ext4Attributes& attributes) {
  KILN_ASSIGN(Filesystem * fs, state_->usable(true));
  KILN_ASSIGN(Place place, place_of(*fs, path));
  ext2_ino_t ino = 0;
  Inode inode = fs->new_inode_buffer();
  if (place.existing) {
    ino = *place.existing;
    KILN_ASSIGN(inode, fs->read_inode(ino, path));
    if (!LINUX_S_ISDIR(inode->i_mode))
      return fail(ErrorKind::kBadInput, "{}: exists in the image {} and is not a directory", path,
                  fs->name());
  } else {
    KILN_ASSIGN(ino, fs->allocate_inode(place.directory, true, path));
    std::vector<char> blocks = ext4::build_directory(*fs, ino, place.directory, {});
    ext4::ContentWriter writer(*fs, path);
    KILN_TRY(writer.write(0, blocks.data(), blocks.size()));
    KILN_ASSIGN(std::vector<ext4::Extent> extents, writer.finish());
    KILN_TRY(fs->attach(ino, inode, extents, path));
    if (errcode_t rc = ext2fs_inode_size_set(fs->get(), inode.base(), blocks.size()); rc != 0)
      return ext4::failure(rc, fs->name(), fmt::format("cannot set the size of {}", path));
    inode->i_links_count = 2;
  }
  inode->i_mode = static_cast<__u16>(LINUX_S_IFDIR | (attributes.mode & 07777));
  inode.set_owner(attributes.uid, attributes.gid);
  inode.set_times(attributes.mtime, 0);
  KILN_TRY(fs->write_inode(ino, inode, path));
  if (place.existing) return {};
  KILN_TRY(link_entry(*fs, place.directory, place.name, ino, EXT2_FT_DIR, path));
  return adjust_directory_links(*fs, place.directory, +1, path);
}

Result<> Ext4Image::make_symlink(std::string_view path, std::string_view target,
                                 const Ext4Attributes& attributes) {
  KILN_ASSIGN(Filesystem * fs, state_->usable(true));
  KILN_ASSIGN(Place place, place_of(*fs, path));
  std::string where(path);
  if (place.existing) {
    KILN_ASSIGN(Inode old, fs->read_inode(*place.existing, path));
    if (LINUX_S_ISDIR(old->i_mode))
      return fail(ErrorKind::kBadInput, "{}: is a directory in the image {}", path, fs->name());
    KILN_TRY(remove_entry(*fs, place.directory, place.name, *place.existing, where, false));
  }
  KILN_ASSIGN(ext2_ino_t ino, fs->allocate_inode(place.directory, false, path));
  Inode inode = fs->new_inode_buffer();
  // Symlink permissions mean nothing on Linux; they are always 0777.
  inode->i_mode = LINUX_S_IFLNK | 0777;
  inode.set_owner(attributes.uid, attributes.gid);
  inode.set_times(attributes.mtime, 0);
  inode->i_links_count = 1;
  KILN_TRY(ext4::write_symlink(*fs, ino, inode, target, path));
  KILN_TRY(fs->write_inode(ino, inode, path));
  return link_entry(*fs, place.directory, place.name, ino, EXT2_FT_SYMLINK, path);
}

Result<> Ext4Image::remove(std::string_view path, bool recursive) {
  KILN_ASSIGN(Filesystem * fs, state_->usable(true));
  KILN_ASSIGN(Place place, place_of(*fs, path));
  if (!place.existing) return not_found(*fs, path);
  return remove_entry(*fs, place.directory, place.name, *place.existing, std::string(path),
                      recursive);
}

Result<> Ext4Image::set_mode(std::string_view path, uint32_t mode) {
  KILN_ASSIGN(Filesystem * fs, state_->usable(true));
  KILN_ASSIGN(ext2_ino_t ino, require(*fs, path, false));
  KILN_ASSIGN(Inode inode, fs->read_inode(ino, path));
  if (LINUX_S_ISLNK(inode->i_mode))
    return fail(ErrorKind::kBadInput, "{}: is a symlink in the image {}; symlinks have no mode",
                path, fs->name());
  inode->i_mode = static_cast<__u16>((inode->i_mode & LINUX_S_IFMT) | (mode & 07777));
  return fs->write_inode(ino, inode, path);
}

Result<> Ext4Image::set_owner(std::string_view path, uint32_t uid, uint32_t gid) {
  KILN_ASSIGN(Filesystem * fs, state_->usable(true));
  KILN_ASSIGN(ext2_ino_t ino, require(*fs, path, false));
  KILN_ASSIGN(Inode inode, fs->read_inode(ino, path));
  inode.set_owner(uid, gid);
  return fs->write_inode(ino, inode, path);
}

Result<std::optional<std::string>> Ext4Image::get_xattr(std::string_view path,
                                                        std::string_view name) {
  KILN_ASSIGN(Filesystem * fs, state_->usable(false));
  KILN_ASSIGN(ext2_ino_t ino, require(*fs, path, false));
  ext2_xattr_handle* handle = nullptr;
  errcode_t rc = ext2fs_xattrs_open(fs->get(), ino, &handle);
  if (rc == 0) rc = ext2fs_xattrs_read(handle);
  void* value = nullptr;
  size_t size = 0;
  std::string key(name);
  if (rc == 0) rc = ext2fs_xattr_get(handle, key.c_str(), &value, &size);
  if (handle != nullptr) ext2fs_xattrs_close(&handle);
  if (rc == EXT2_ET_EA_KEY_NOT_FOUND) return std::nullopt;
  if (rc != 0)
    return ext4::failure(rc, fs->name(), fmt::format("cannot read attribute {} of {}", name, path));
  std::string out(static_cast<const char*>(value), size);
  ext2fs_free_mem(&value);
  return out;
}

Result<> Ext4Image::set_xattr(std::string_view path, std::string_view name,
                              std::string_view value) {
  KILN_ASSIGN(Filesystem * fs, state_->usable(true));
  KILN_ASSIGN(ext2_ino_t ino, require(*fs, path, false));
  return fs->set_xattrs(ino, {{std::string(name), std::string(value)}}, path);
}

Ext4Usage Ext4Image::usage() const {
  if (!state_ || !state_->fs) return {};
  ext2_super_block* super = state_->fs->get()->super;
  Uuid uuid;
  std::memcpy(uuid.bytes.data(), super->s_uuid, uuid.bytes.size());
  std::string label(reinterpret_cast<const char*>(super->s_volume_name),
                    strnlen(reinterpret_cast<const char*>(super->s_volume_name), sizeof super->s_volume_name));
  return {state_->fs->block_size(), ext2fs_blocks_count(super), ext2fs_free_blocks_count(super),
          super->s_inodes_count, super->s_free_inodes_count,
          ext2fs_has_feature_extents(super) ? "ext4" : ext2fs_has_feature_journal(super) ? "ext3" : "ext2",
          uuid.to_string(), label};
}

Result<> Ext4Image::close() {
  KILN_ASSIGN(Filesystem * fs, state_->usable(false));
  KILN_TRY(fs->close(state_->flush));
  state_->fs.reset();
  return {};
}

}  // namespace kiln
