#include "builder/archive_filesystem.h"

#include <ctime>

#include "base/files.h"
#include "base/size.h"
#include "base/hash.h"
#include "base/uuid.h"
#include "formats/ext4/ext4_image.h"
#include "formats/tree/tar_reader.h"

namespace kiln {
namespace {

Result<uint64_t> image_size(const ArchiveFilesystemRequest& request, const Ext4Options& options) {
  bool extra = request.size.starts_with('+');
  if (!request.size.empty() && !extra) return parse_size(request.size);
  KILN_ASSIGN(uint64_t needed, Ext4Image::minimum_size(request.archive, options));
  if (!extra) return needed;
  KILN_ASSIGN(uint64_t more, parse_size(request.size.substr(1)));
  return round_up(needed + more, kMiB);
}

}  // namespace

Result<> make_archive_filesystem(const ArchiveFilesystemRequest& request, Reporter& reporter) {
  Ext4Options options;
  options.fs_type = request.type;
  options.label = request.label;
  options.timestamp = request.epoch.value_or(static_cast<int64_t>(std::time(nullptr)));
  if (request.epoch) {
    // Reproducible: identifiers follow from the content, not from chance.
    KILN_ASSIGN(std::string digest, file_digest_hex(request.archive));
    options.uuid = Uuid::from_name("make-fs/" + digest + "/uuid");
    options.hash_seed = Uuid::from_name("make-fs/" + digest + "/hash-seed");
  } else {
    options.uuid = Uuid::random();
    options.hash_seed = Uuid::random();
  }
  KILN_ASSIGN(options.size_bytes, image_size(request, options));
  options.size_bytes = options.size_bytes / 4096 * 4096;
  KILN_ASSIGN(TarReader reader, TarReader::open(request.archive));
  KILN_ASSIGN(AtomicFile target, AtomicFile::create(request.image));
  KILN_ASSIGN(Ext4Image fs, Ext4Image::format(target.temp_path(), options));
  reporter.step("make-fs", fmt::format("{} {} from {}", request.type, format_size(options.size_bytes),
                                       request.archive.string()));
  ImportOptions import;
  import.progress = [&reporter](uint64_t done, uint64_t total) { reporter.progress(done, total); };
  KILN_TRY(fs.import(reader, import));
  KILN_TRY(fs.close());
  KILN_TRY(target.commit());
  reporter.done();
  return {};
}

}  // namespace kiln
