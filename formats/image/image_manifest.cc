#include "formats/image/image_manifest.h"

#include <nlohmann/json.hpp>

#include "base/files.h"
#include "base/hash.h"
#include "base/vm_shape.h"

namespace kiln {
namespace {

using Json = nlohmann::ordered_json;

// Reading is lenient about what is missing (older kilns wrote less) and
// strict about what is there with the wrong type.
class Reader {
 public:
  explicit Reader(const std::string& source) : source_(source) {}

  Result<std::string> text(const Json& object, const char* key, std::string_view where) const {
    auto it = object.find(key);
    if (it == object.end() || it->is_null()) return std::string();
    if (!it->is_string()) return wrong(where, key, "a string");
    return it->get<std::string>();
  }

  template <class Number>
  Result<Number> number(const Json& object, const char* key, std::string_view where) const {
    auto it = object.find(key);
    if (it == object.end() || it->is_null()) return Number{};
    bool fits = std::is_signed_v<Number> ? it->is_number_integer() : it->is_number_unsigned();
    if (!fits) return wrong(where, key, std::is_signed_v<Number> ? "an integer" : "a whole number");
    return it->get<Number>();
  }

  Result<bool> flag(const Json& object, const char* key, std::string_view where) const {
    auto it = object.find(key);
    if (it == object.end()) return false;
    if (!it->is_boolean()) return wrong(where, key, "true or false");
    return it->get<bool>();
  }

  // An object member; an empty object when it is missing.
  Result<const Json*> object(const Json& parent, const char* key, std::string_view where) const {
    static const Json kEmpty = Json::object();
    auto it = parent.find(key);
    if (it == parent.end() || it->is_null()) return &kEmpty;
    if (!it->is_object()) return wrong(where, key, "an object");
    return &*it;
  }

  Result<const Json*> array(const Json& parent, const char* key, std::string_view where) const {
    static const Json kEmpty = Json::array();
    auto it = parent.find(key);
    if (it == parent.end() || it->is_null()) return &kEmpty;
    if (!it->is_array()) return wrong(where, key, "a list");
    return &*it;
  }

  std::unexpected<Error> bad(std::string_view what) const {
    return fail(ErrorKind::kBadInput, "{}: {}; is this the manifest.json of a kiln bake?", source_, what);
  }

 private:
  std::unexpected<Error> wrong(std::string_view where, std::string_view key, std::string_view expected) const {
    return bad(fmt::format("{}{}{} is not {}", where, where.empty() ? "" : ".", key, expected));
  }
  const std::string& source_;
};

Json partition_json(const ManifestPartition& p) {
  return {{"number", p.number}, {"name", p.name}, {"type", p.type_guid},
          {"uuid", p.uuid},     {"offset", p.offset}, {"size", p.size}};
}

Json storage_json(const ImageManifest& m) {
  Json volumes = Json::array();
  for (const ManifestVolume& v : m.volumes)
    volumes.push_back({{"name", v.name}, {"filesystem", v.filesystem}, {"mountpoint", v.mountpoint},
                       {"label", v.label}, {"uuid", v.uuid}, {"offset", v.offset}, {"size", v.size}});
  Json images = Json::array();
  for (const ManifestPartitionImage& image : m.partition_images)
    images.push_back({{"file", image.file}, {"volume", image.volume}});
  Json out = {{"layout", m.layout}, {"root_device", m.root_device}, {"volumes", volumes}, {"partition_images", images}};
  if (m.lvm)
    out["lvm"] = {{"vg", m.lvm->vg},
                  {"vg_uuid", m.lvm->vg_uuid},
                  {"pv_uuid", m.lvm->pv_uuid},
                  {"extent_size", m.lvm->extent_size},
                  {"extent_count", m.lvm->extent_count},
                  {"pe_start", m.lvm->pe_start}};
  if (m.encryption) {
    const ManifestEncryption& e = *m.encryption;
    out["encryption"] = {{"type", e.type},           {"cipher", e.cipher},       {"key_bits", e.key_bits},
                         {"sector_size", e.sector_size}, {"data_offset", e.data_offset}, {"keyslots", e.keyslots},
                         {"encrypted_bytes", e.encrypted_bytes}, {"method", e.method}, {"name", e.name}};
    if (!e.uuid.empty()) out["encryption"]["uuid"] = e.uuid;
  }
  return out;
}

Json image_json(const ImageManifest& m) {
  Json partitions = Json::array();
  for (const ManifestPartition& p : m.partitions) partitions.push_back(partition_json(p));
  Json image = {{"name", m.name},
                {"version", m.version},
                {"description", m.description},
                {"layout", m.layout},
                {"architecture", m.architecture},
                {"size", m.size},
                {"root_filesystem",
                 {{"type", m.root_filesystem_type},
                  {"uuid", m.root_filesystem_uuid},
                  {"size", m.root_filesystem_size},
                  {"label", m.root_filesystem_label}}},
                {"partitions", partitions},
                {"kernel", m.kernel},
                {"kernel_cmdline", m.kernel_cmdline},
                {"memory_mib", m.memory_mib},
                {"vcpus", m.vcpus}};
  if (!m.esp_volume_id.empty()) image["esp_volume_id"] = m.esp_volume_id;
  image["root_device"] = m.root_device;
  return image;
}

Result<> read_image(const Reader& r, const Json& image, ImageManifest& m) {
  KILN_ASSIGN(m.name, r.text(image, "name", "image"));
  KILN_ASSIGN(m.version, r.text(image, "version", "image"));
  KILN_ASSIGN(m.description, r.text(image, "description", "image"));
  KILN_ASSIGN(m.layout, r.text(image, "layout", "image"));
  KILN_ASSIGN(m.architecture, r.text(image, "architecture", "image"));
  KILN_ASSIGN(m.size, r.number<uint64_t>(image, "size", "image"));
  KILN_ASSIGN(const Json* root, r.object(image, "root_filesystem", "image"));
  KILN_ASSIGN(m.root_filesystem_type, r.text(*root, "type", "image.root_filesystem"));
  KILN_ASSIGN(m.root_filesystem_uuid, r.text(*root, "uuid", "image.root_filesystem"));
  KILN_ASSIGN(m.root_filesystem_size, r.number<uint64_t>(*root, "size", "image.root_filesystem"));
  KILN_ASSIGN(m.root_filesystem_label, r.text(*root, "label", "image.root_filesystem"));
  KILN_ASSIGN(const Json* partitions, r.array(image, "partitions", "image"));
  for (const Json& item : *partitions) {
    if (!item.is_object()) return r.bad("image.partitions holds something other than objects");
    ManifestPartition p;
    KILN_ASSIGN(p.number, r.number<int>(item, "number", "image.partitions"));
    KILN_ASSIGN(p.name, r.text(item, "name", "image.partitions"));
    KILN_ASSIGN(p.type_guid, r.text(item, "type", "image.partitions"));
    KILN_ASSIGN(p.uuid, r.text(item, "uuid", "image.partitions"));
    KILN_ASSIGN(p.offset, r.number<uint64_t>(item, "offset", "image.partitions"));
    KILN_ASSIGN(p.size, r.number<uint64_t>(item, "size", "image.partitions"));
    m.partitions.push_back(std::move(p));
  }
  KILN_ASSIGN(m.kernel, r.text(image, "kernel", "image"));
  KILN_ASSIGN(m.kernel_cmdline, r.text(image, "kernel_cmdline", "image"));
  KILN_ASSIGN(m.memory_mib, r.number<uint64_t>(image, "memory_mib", "image"));
  KILN_ASSIGN(m.vcpus, r.number<int>(image, "vcpus", "image"));
  KILN_ASSIGN(m.esp_volume_id, r.text(image, "esp_volume_id", "image"));
  KILN_ASSIGN(m.root_device, r.text(image, "root_device", "image"));
  if (m.name.empty()) return r.bad("image.name is missing");
  if (m.version.empty()) return r.bad("image.version is missing");
  if (!is_plain_file_name(m.name)) return r.bad(fmt::format("image.name {} is not a plain name", shown_value(m.name)));
  if (!is_plain_file_name(m.version))
    return r.bad(fmt::format("image.version {} is not a plain version", shown_value(m.version)));
  // 0 is "not recorded", as in images baked before kiln recorded it.
  if (m.memory_mib != 0) {
    if (std::string problem = vm_memory_mib_problem(m.memory_mib); !problem.empty())
      return r.bad("image.memory_mib: " + problem);
  }
  if (m.vcpus != 0) {
    if (std::string problem = vm_vcpus_problem(m.vcpus); !problem.empty()) return r.bad("image.vcpus: " + problem);
  }
  return {};
}

Result<> read_build(const Reader& r, const Json& build, ImageManifest& m) {
  KILN_ASSIGN(m.build_timestamp, r.number<int64_t>(build, "timestamp", "build"));
  KILN_ASSIGN(m.reproducible, r.flag(build, "reproducible", "build"));
  KILN_ASSIGN(m.bootstrap_key, r.text(build, "bootstrap_key", "build"));
  KILN_ASSIGN(m.customize_key, r.text(build, "customize_key", "build"));
  return {};
}

Result<> read_lists(const Reader& r, const Json& root, ImageManifest& m) {
  KILN_ASSIGN(const Json* packages, r.array(root, "packages", ""));
  for (const Json& item : *packages) {
    if (!item.is_object()) return r.bad("packages holds something other than objects");
    ManifestPackage p;
    KILN_ASSIGN(p.name, r.text(item, "name", "packages"));
    KILN_ASSIGN(p.version, r.text(item, "version", "packages"));
    KILN_ASSIGN(p.architecture, r.text(item, "architecture", "packages"));
    m.packages.push_back(std::move(p));
  }
  auto artifacts = root.find("artifacts");
  if (artifacts == root.end() || !artifacts->is_array()) return r.bad("no \"artifacts\" list");
  for (const Json& item : *artifacts) {
    if (!item.is_object() || !item.contains("size") || !item["size"].is_number_unsigned())
      return r.bad("an artifact has no size");
    ManifestArtifact a;
    KILN_ASSIGN(a.file, r.text(item, "file", "artifacts"));
    KILN_ASSIGN(a.sha256, r.text(item, "sha256", "artifacts"));
    a.size = item["size"].get<uint64_t>();
    if (!is_plain_file_name(a.file) || a.file == "manifest.json")
      return r.bad(fmt::format("artifact {} is not a plain file name", shown_value(a.file)));
    if (!a.sha256.empty() && !is_sha256_hex(a.sha256))
      return r.bad(fmt::format("artifact {}: sha256 {} is not 64 hex digits", shown_value(a.file), shown_value(a.sha256)));
    if (m.find(a.file)) return r.bad(fmt::format("artifact {} is listed twice", shown_value(a.file)));
    m.artifacts.push_back(std::move(a));
  }
  return {};
}

Result<> read_storage(const Reader& r, const Json& storage, ImageManifest& m) {
  KILN_ASSIGN(const Json* volumes, r.array(storage, "volumes", "storage"));
  for (const Json& item : *volumes) {
    if (!item.is_object()) return r.bad("storage.volumes holds something other than objects");
    ManifestVolume v;
    KILN_ASSIGN(v.name, r.text(item, "name", "storage.volumes"));
    KILN_ASSIGN(v.filesystem, r.text(item, "filesystem", "storage.volumes"));
    KILN_ASSIGN(v.mountpoint, r.text(item, "mountpoint", "storage.volumes"));
    KILN_ASSIGN(v.label, r.text(item, "label", "storage.volumes"));
    KILN_ASSIGN(v.uuid, r.text(item, "uuid", "storage.volumes"));
    KILN_ASSIGN(v.offset, r.number<uint64_t>(item, "offset", "storage.volumes"));
    KILN_ASSIGN(v.size, r.number<uint64_t>(item, "size", "storage.volumes"));
    m.volumes.push_back(std::move(v));
  }
  KILN_ASSIGN(const Json* images, r.array(storage, "partition_images", "storage"));
  for (const Json& item : *images) {
    if (!item.is_object()) return r.bad("storage.partition_images holds something other than objects");
    ManifestPartitionImage image;
    KILN_ASSIGN(image.file, r.text(item, "file", "storage.partition_images"));
    KILN_ASSIGN(image.volume, r.text(item, "volume", "storage.partition_images"));
    m.partition_images.push_back(std::move(image));
  }
  if (storage.contains("lvm")) {
    KILN_ASSIGN(const Json* lvm, r.object(storage, "lvm", "storage"));
    ManifestLvm l;
    KILN_ASSIGN(l.vg, r.text(*lvm, "vg", "storage.lvm"));
    KILN_ASSIGN(l.vg_uuid, r.text(*lvm, "vg_uuid", "storage.lvm"));
    KILN_ASSIGN(l.pv_uuid, r.text(*lvm, "pv_uuid", "storage.lvm"));
    KILN_ASSIGN(l.extent_size, r.number<uint64_t>(*lvm, "extent_size", "storage.lvm"));
    KILN_ASSIGN(l.extent_count, r.number<uint64_t>(*lvm, "extent_count", "storage.lvm"));
    KILN_ASSIGN(l.pe_start, r.number<uint64_t>(*lvm, "pe_start", "storage.lvm"));
    m.lvm = std::move(l);
  }
  if (storage.contains("encryption")) {
    KILN_ASSIGN(const Json* enc, r.object(storage, "encryption", "storage"));
    ManifestEncryption e;
    KILN_ASSIGN(e.type, r.text(*enc, "type", "storage.encryption"));
    KILN_ASSIGN(e.cipher, r.text(*enc, "cipher", "storage.encryption"));
    KILN_ASSIGN(e.key_bits, r.number<uint32_t>(*enc, "key_bits", "storage.encryption"));
    KILN_ASSIGN(e.sector_size, r.number<uint32_t>(*enc, "sector_size", "storage.encryption"));
    KILN_ASSIGN(e.data_offset, r.number<uint64_t>(*enc, "data_offset", "storage.encryption"));
    KILN_ASSIGN(e.keyslots, r.number<int>(*enc, "keyslots", "storage.encryption"));
    KILN_ASSIGN(e.encrypted_bytes, r.number<uint64_t>(*enc, "encrypted_bytes", "storage.encryption"));
    KILN_ASSIGN(e.method, r.text(*enc, "method", "storage.encryption"));
    KILN_ASSIGN(e.name, r.text(*enc, "name", "storage.encryption"));
    KILN_ASSIGN(e.uuid, r.text(*enc, "uuid", "storage.encryption"));
    m.encryption = std::move(e);
  }
  return {};
}

// The sha256 is left out until it is taken: no key rather than an empty one.
Json artifact_json(const ManifestArtifact& artifact) {
  Json out = {{"file", artifact.file}, {"size", artifact.size}};
  if (!artifact.sha256.empty()) out["sha256"] = artifact.sha256;
  return out;
}

}  // namespace

const ManifestArtifact* ImageManifest::find(std::string_view file) const {
  for (const ManifestArtifact& artifact : artifacts)
    if (artifact.file == file) return &artifact;
  return nullptr;
}

std::optional<int> ImageManifest::root_partition() const {
  for (const ManifestPartition& partition : partitions)
    if (partition.name == "root") return partition.number;
  return std::nullopt;
}

std::string write_image_manifest(const ImageManifest& m) {
  Json packages = Json::array();
  for (const ManifestPackage& p : m.packages)
    packages.push_back({{"name", p.name}, {"version", p.version}, {"architecture", p.architecture}});
  Json artifacts = Json::array();
  for (const ManifestArtifact& a : m.artifacts) artifacts.push_back(artifact_json(a));
  Json out = {{"format", m.format},
              {"kiln_version", m.kiln_version},
              {"recipe", {{"file", m.recipe_file}, {"sha256", m.recipe_sha256}}},
              {"image", image_json(m)},
              {"build",
               {{"timestamp", m.build_timestamp},
                {"reproducible", m.reproducible},
                {"bootstrap_key", m.bootstrap_key},
                {"customize_key", m.customize_key}}},
              {"packages", packages},
              {"artifacts", artifacts},
              {"storage", storage_json(m)}};
  if (!m.imported_from.empty()) {
    out["imported"] = {{"file", m.imported_from}, {"format", m.imported_format}, {"sha256", m.imported_sha256}};
    if (!m.imported_config.empty()) out["imported"]["config"] = m.imported_config;
    if (!m.imported_disks.empty()) {
      Json disks = Json::array();
      for (const ManifestImportedDisk& d : m.imported_disks)
        disks.push_back({{"member", d.member}, {"device", d.device}, {"use", d.use}, {"file", d.file}});
      out["imported"]["disks"] = disks;
    }
  }
  return out.dump(2) + "\n";
}

namespace {

// What dpkg installed says, for a manifest written before kiln recorded the
// architecture.
std::string architecture_of_packages(const std::vector<ManifestPackage>& packages) {
  for (const ManifestPackage& p : packages)
    if (!p.architecture.empty() && p.architecture != "all") return p.architecture;
  return "amd64";
}

}  // namespace

Result<ImageManifest> read_image_manifest(std::string_view text, const std::string& source) {
  Reader r(source);
  Json root = Json::parse(text, nullptr, false);
  if (root.is_discarded() || !root.is_object()) return fail(ErrorKind::kBadInput, "{}: not a JSON object", source);
  ImageManifest m;
  KILN_ASSIGN(int format, r.number<int>(root, "format", ""));
  m.format = format == 0 ? 1 : format;
  if (m.format > ImageManifest::kFormat)
    return fail(ErrorKind::kBadInput,
                "{}: a manifest of format {}, newer than this kiln reads (format {} and older); use a newer kiln",
                source, m.format, ImageManifest::kFormat);
  if (m.format < 1) return r.bad(fmt::format("format {} is not a manifest format", m.format));
  KILN_ASSIGN(m.kiln_version, r.text(root, "kiln_version", ""));
  KILN_ASSIGN(const Json* recipe, r.object(root, "recipe", ""));
  KILN_ASSIGN(m.recipe_file, r.text(*recipe, "file", "recipe"));
  KILN_ASSIGN(m.recipe_sha256, r.text(*recipe, "sha256", "recipe"));
  if (!root.contains("image") || !root["image"].is_object()) return r.bad("no \"image\" object");
  KILN_TRY(read_image(r, root["image"], m));
  KILN_ASSIGN(const Json* build, r.object(root, "build", ""));
  KILN_TRY(read_build(r, *build, m));
  if (root.contains("imported")) {
    KILN_ASSIGN(const Json* imported, r.object(root, "imported", ""));
    KILN_ASSIGN(m.imported_from, r.text(*imported, "file", "imported"));
    KILN_ASSIGN(m.imported_format, r.text(*imported, "format", "imported"));
    KILN_ASSIGN(m.imported_sha256, r.text(*imported, "sha256", "imported"));
    KILN_ASSIGN(m.imported_config, r.text(*imported, "config", "imported"));
    KILN_ASSIGN(const Json* disks, r.array(*imported, "disks", "imported"));
    for (const Json& item : *disks) {
      if (!item.is_object()) return r.bad("imported.disks holds something other than objects");
      ManifestImportedDisk d;
      KILN_ASSIGN(d.member, r.text(item, "member", "imported.disks"));
      KILN_ASSIGN(d.device, r.text(item, "device", "imported.disks"));
      KILN_ASSIGN(d.use, r.text(item, "use", "imported.disks"));
      KILN_ASSIGN(d.file, r.text(item, "file", "imported.disks"));
      if (!is_plain_file_name(d.file))
        return r.bad(fmt::format("imported disk {} is not a plain file name", shown_value(d.file)));
      m.imported_disks.push_back(std::move(d));
    }
  }
  KILN_TRY(read_lists(r, root, m));
  KILN_ASSIGN(const Json* storage, r.object(root, "storage", ""));
  KILN_TRY(read_storage(r, *storage, m));
  if (m.architecture.empty()) m.architecture = architecture_of_packages(m.packages);
  return m;
}

}  // namespace kiln
