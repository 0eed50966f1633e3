// The zip container of torch.save (PyTorch >= 1.6) and torch.jit.save: entries located through
// the central directory, zip64 records included; stored (uncompressed) entries are read, which
// is every entry torch.save writes (torch.jit.save deflates only its source code). Entry data are views
// of the mapped file. Every size and offset is checked against the file; a malformed archive is a
// wico::Error naming the file, the byte offset and what was expected there.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "wico/io/mapped_file.h"

namespace wico::io {

struct ZipEntry {
  std::string name;
  std::uint64_t data_offset = 0;  // of the entry's bytes in the file
  std::uint64_t size = 0;  // stored size (compressed size for a compressed entry)
  std::uint32_t crc32 = 0;
  std::uint16_t method = 0;  // 0 stored; TorchScript deflates its code/ entries
};

class ZipArchive {
 public:
  explicit ZipArchive(std::shared_ptr<const MappedFile> file);

  // True when `bytes` start with a local file header.
  static bool looks_like_zip(std::string_view bytes);

  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(std::string_view name) const;
  // The entry named `name`; a missing one is an Error naming the archive and the entry.
  const ZipEntry& at(std::string_view name) const;
  // A stored entry's bytes; a compressed one is an Error (no reader here needs one).
  std::string_view data(const ZipEntry& entry) const;
  // Compares every stored entry's CRC-32 with its bytes; a mismatch is an Error naming the entry
  // (a bit flipped on disk, or a file cut and patched) before anything else reads it.
  void verify_checksums() const;
  const MappedFile& file() const { return *file_; }
  const std::shared_ptr<const MappedFile>& shared_file() const { return file_; }

 private:
  [[noreturn]] void fail(std::uint64_t offset, const std::string& what) const;
  std::shared_ptr<const MappedFile> file_;
  std::vector<ZipEntry> entries_;
};

}  // namespace wico::io
