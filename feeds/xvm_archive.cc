#include "feeds/xvm_archive.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <set>

#include <archive.h>
#include <archive_entry.h>

#include "base/files.h"
#include "base/interrupt.h"
#include "base/hash.h"
#include "feeds/xvm_xml.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

constexpr size_t kChunk = 1 << 20;

struct ReaderDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct WriterDeleter {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct EntryDeleter {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};

std::string message_of(archive* a) {
  const char* text = archive_error_string(a);
  return text ? text : "libarchive error";
}

std::string_view type_name(mode_t type) {
  switch (type) {
    case AE_IFDIR: return "a directory";
    case AE_IFLNK: return "a symbolic link";
    case AE_IFCHR: return "a character device";
    case AE_IFBLK: return "a block device";
    case AE_IFIFO: return "a FIFO";
    case AE_IFSOCK: return "a socket";
    default: return "not a regular file";
  }
}

Result<> pread_all(int fd, char* buffer, size_t size, uint64_t offset, std::string_view name) {
  while (size > 0) {
    ssize_t n = ::pread(fd, buffer, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("cannot read", name, errno);
    }
    if (n == 0) return fail(ErrorKind::kUntrusted, "{}: ends early (truncated archive)", name);
    buffer += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return {};
}

}  // namespace

Result<XvmArchive> XvmArchive::open(const fs::path& path, std::string name) {
  XvmArchive out;
  out.path_ = path;
  out.name_ = name.empty() ? path.string() : std::move(name);
  const std::string& shown = out.name_;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return fail_errno("cannot open archive", shown, errno);
  std::unique_ptr<archive, ReaderDeleter> a(archive_read_new());
  archive_read_support_format_tar(a.get());
  archive_read_support_format_gnutar(a.get());
  if (archive_read_open_filename(a.get(), path.c_str(), kChunk) != ARCHIVE_OK)
    return fail(ErrorKind::kUntrusted, "{}: not an xvm archive (an uncompressed tar): {}", path.string(),
                message_of(a.get()));
  std::set<std::string> names;
  while (true) {
    archive_entry* entry = nullptr;
    int rc = archive_read_next_header(a.get(), &entry);
    if (rc == ARCHIVE_EOF) break;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
      std::string after = out.members_.empty() ? "" : fmt::format(" after member '{}'", out.members_.back().name);
      return fail(ErrorKind::kUntrusted, "{}: not a readable xvm archive{}: {}", shown, after,
                  message_of(a.get()));
    }
    const char* raw = archive_entry_pathname(entry);
    std::string_view name = raw ? raw : "";
    while (name.starts_with("./")) name.remove_prefix(2);
    if (!is_safe_member_name(name))
      return fail(ErrorKind::kUntrusted,
                  "{}: member '{}' has an unsafe name (an absolute path, a '..' component or a control "
                  "character); refusing the archive",
                  shown, raw ? raw : "");
    mode_t type = archive_entry_filetype(entry);
    if (archive_entry_hardlink(entry) || type != AE_IFREG)
      return fail(ErrorKind::kUntrusted, "{}: member '{}' is {}; an xvm archive holds plain files only",
                  shown, name, archive_entry_hardlink(entry) ? "a hard link" : type_name(type));
    if (archive_entry_sparse_count(entry) > 1)
      return fail(ErrorKind::kUntrusted, "{}: member '{}' is stored sparse; an xvm archive stores files whole",
                  shown, name);
    if (!names.insert(std::string(name)).second)
      return fail(ErrorKind::kUntrusted, "{}: member '{}' appears twice; refusing an ambiguous archive",
                  shown, name);
    XvmMember member;
    member.name = name;
    member.size = static_cast<uint64_t>(archive_entry_size(entry));
    member.offset = static_cast<uint64_t>(archive_filter_bytes(a.get(), 0));
    if (archive_entry_size(entry) < 0 || member.offset + member.size > static_cast<uint64_t>(st.st_size))
      return fail(ErrorKind::kUntrusted, "{}: member '{}' runs past the end of the file (truncated archive)",
                  shown, name);
    out.members_.push_back(std::move(member));
    if (archive_read_data_skip(a.get()) != ARCHIVE_OK)
      return fail(ErrorKind::kUntrusted, "{}: cannot skip member '{}': {}", shown, name, message_of(a.get()));
  }
  return out;
}

const XvmMember* XvmArchive::find(std::string_view name) const {
  for (const XvmMember& member : members_)
    if (member.name == name) return &member;
  return nullptr;
}

Result<std::string> XvmArchive::read(const XvmMember& member, uint64_t max_size) const {
  if (member.size > max_size)
    return fail(ErrorKind::kUntrusted, "{}: member '{}' is {} bytes, more than the {} such a file may have",
                path_.string(), member.name, member.size, max_size);
  KILN_ASSIGN(UniqueFd fd, open_file(path_, O_RDONLY));
  std::string out(member.size, '\0');
  KILN_TRY(pread_all(fd.get(), out.data(), out.size(), member.offset, name_));
  return out;
}

Result<> XvmArchive::stream(const XvmMember& member, const ByteSink& sink) const {
  KILN_ASSIGN(UniqueFd fd, open_file(path_, O_RDONLY));
  ::posix_fadvise(fd.get(), static_cast<off_t>(member.offset), static_cast<off_t>(member.size),
                  POSIX_FADV_SEQUENTIAL);
  std::string buffer(kChunk, '\0');
  for (uint64_t done = 0; done < member.size;) {
    KILN_TRY(check_interrupted());
    size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), member.size - done));
    KILN_TRY(pread_all(fd.get(), buffer.data(), want, member.offset + done, name_));
    KILN_TRY(sink(std::string_view(buffer.data(), want)));
    done += want;
  }
  return {};
}

namespace {

struct TarSink {
  int fd = -1;
  std::string path;
  Hasher sha256;
  uint64_t written = 0;
  std::optional<Error> error;
};

la_ssize_t write_out(archive*, void* user, const void* buffer, size_t length) {
  auto* sink = static_cast<TarSink*>(user);
  if (auto done = write_all(sink->fd, buffer, length, sink->path); !done) {
    sink->error = done.error();
    return -1;
  }
  sink->sha256.update(buffer, length);
  sink->written += length;
  return static_cast<la_ssize_t>(length);
}

}  // namespace

Result<TarWritten> write_tar(const fs::path& target, const std::vector<TarInput>& members, int64_t mtime,
                           const std::function<void(uint64_t, uint64_t)>& progress) {
  uint64_t total = 0;
  std::vector<uint64_t> sizes;
  for (const TarInput& member : members) {
    struct stat st;
    if (::stat(member.source.c_str(), &st) != 0) return fail_errno("stat", member.source.string(), errno);
    sizes.push_back(static_cast<uint64_t>(st.st_size));
    total += sizes.back();
  }
  KILN_ASSIGN(AtomicFile out, AtomicFile::create(target));
  TarSink sink;
  sink.fd = out.fd();
  sink.path = out.temp_path().string();
  std::unique_ptr<archive, WriterDeleter> a(archive_write_new());
  auto failed = [&](std::string_view what) {
    if (sink.error) return std::unexpected(*sink.error);
    return fail(ErrorKind::kFailed, "{}: writing the archive: {}: {}", target.string(), what, message_of(a.get()));
  };
  if (archive_write_set_format_pax_restricted(a.get()) != ARCHIVE_OK ||
      archive_write_open(a.get(), &sink, nullptr, write_out, nullptr) != ARCHIVE_OK)
    return failed("setting up");
  std::string buffer(kChunk, '\0');
  uint64_t done = 0;
  for (size_t i = 0; i < members.size(); ++i) {
    const TarInput& member = members[i];
    std::unique_ptr<archive_entry, EntryDeleter> entry(archive_entry_new());
    archive_entry_set_pathname(entry.get(), member.name.c_str());
    archive_entry_set_filetype(entry.get(), AE_IFREG);
    archive_entry_set_perm(entry.get(), 0644);
    archive_entry_set_size(entry.get(), static_cast<la_int64_t>(sizes[i]));
    archive_entry_set_mtime(entry.get(), static_cast<time_t>(mtime), 0);
    archive_entry_set_uid(entry.get(), 0);
    archive_entry_set_gid(entry.get(), 0);
    archive_entry_set_uname(entry.get(), "root");
    archive_entry_set_gname(entry.get(), "root");
    if (archive_write_header(a.get(), entry.get()) != ARCHIVE_OK) return failed(member.name);
    KILN_ASSIGN(UniqueFd in, open_file(member.source, O_RDONLY));
    for (uint64_t at = 0; at < sizes[i];) {
      KILN_TRY(check_interrupted());
      size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), sizes[i] - at));
      KILN_TRY(pread_all(in.get(), buffer.data(), want, at, member.source.string()));
      if (archive_write_data(a.get(), buffer.data(), want) != static_cast<la_ssize_t>(want)) return failed(member.name);
      at += want;
      done += want;
      if (progress) progress(done, total);
    }
  }
  if (archive_write_close(a.get()) != ARCHIVE_OK) return failed("finishing");
  KILN_TRY(out.commit());
  return TarWritten{sink.written, sink.sha256.hex_digest()};
}

}  // namespace kiln
