#include "runtime/seed_disk.h"

#include <sys/stat.h>

#include <ctime>

#include "base/files.h"
#include "base/size.h"
#include "crypto/uuid.h"
#include "formats/ext4_image.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

Result<> write_parents(Ext4Image& seed, const std::string& path, int64_t now) {
  std::string parent;
  size_t start = 1;
  while (true) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) return {};
    parent = path.substr(0, slash);
    KILN_ASSIGN(auto st, seed.stat(parent));
    if (!st) KILN_TRY(seed.make_directory(parent, {0755, 0, 0, now}));
    start = slash + 1;
  }
}

Result<> put(Ext4Image& seed, const std::string& path, std::string_view content, uint32_t mode, int64_t now) {
  KILN_TRY(write_parents(seed, path, now));
  return seed.write_file(path, content, {mode, 0, 0, now});
}

uint64_t payload_size(const InstanceSpec& spec) {
  uint64_t total = 0;
  std::error_code ec;
  for (const PersonalityFile& file : spec.personality.files) total += fs::file_size(file.source, ec);
  if (!spec.personality.firstboot.empty()) total += fs::file_size(spec.personality.firstboot, ec);
  return total;
}

}  // namespace

Result<> write_seed_disk(const fs::path& image, const InstanceSpec& spec) {
  const Personality& p = spec.personality;
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  Ext4Options options;
  options.size_bytes = round_up(4 * kMiB + 2 * payload_size(spec), kMiB);
  options.label = std::string(kSeedLabel);
  options.uuid = Uuid::random();
  options.hash_seed = Uuid::random();
  options.timestamp = now;
  KILN_ASSIGN(AtomicFile target, AtomicFile::create(image, 0600));
  KILN_ASSIGN(Ext4Image seed, Ext4Image::format(target.temp_path(), options));
  KILN_TRY(put(seed, "/kiln/instance-id", spec.id + "\n", 0644, now));
  KILN_TRY(put(seed, "/kiln/hostname", p.hostname + "\n", 0644, now));
  KILN_TRY(put(seed, "/kiln/machine-id", p.machine_id + "\n", 0644, now));
  KILN_TRY(put(seed, "/kiln/mac", p.mac + "\n", 0644, now));
  std::string keys;
  for (const std::string& key : p.ssh_keys) keys += key + "\n";
  if (!keys.empty()) KILN_TRY(put(seed, "/kiln/authorized_keys", keys, 0600, now));
  if (!p.firstboot.empty()) {
    KILN_ASSIGN(std::string script, read_file(p.firstboot));
    KILN_TRY(put(seed, "/kiln/firstboot", script, 0755, now));
  }
  for (const PersonalityFile& file : p.files) {
    KILN_ASSIGN(std::string content, read_file(file.source));
    struct stat st;
    uint32_t mode = ::stat(file.source.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0644;
    KILN_TRY(put(seed, "/kiln/files" + file.destination, content, mode, now));
  }
  KILN_TRY(seed.close());
  return target.commit();
}

}  // namespace kiln
