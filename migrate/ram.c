/* Guest RAM in a saved VM (docs/state.md, "RAM"): page i of RAM lives at
 * ram_off + i * 4096 of the file, so the file can be mapped straight over
 * RAM; a zero page is not written and stays a hole of the sparse file (it
 * reads as zero either way). The RAM record says which pages were stored and
 * holds a CRC-32C of the stored pages of every 2 MiB chunk.
 *
 * Save: pages the worker never touched are found through /proc/self/pagemap
 * (neither present nor swapped: an anonymous page no one wrote is zero)
 * without faulting them in; the others are read and compared with zero.
 * Restore: lazily by mapping the file (gm_map_file), where a page costs a
 * fault when the guest first touches it and restore time does not grow with
 * RAM; or eagerly (when the file cannot be mapped) by reading the stored
 * pages and checking every chunk's checksum. The lazy path does not read the
 * RAM up front, so it cannot check those checksums: RAM is the guest's own
 * data, which the host never trusts anyway (every device treats guest
 * memory as hostile), so a damaged page can hurt only the guest. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kestrel/crc32c.h"
#include "kestrel/guest_mem.h"
#include "migrate_int.h"

#define PAGEMAP_PRESENT (1ull << 63)
#define PAGEMAP_SWAPPED (1ull << 62)

bool ram_page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;
	uint64_t acc = 0;

	for (unsigned i = 0; i < STREAM_PAGE / 8; i += 8) {
		acc |= w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] |
		       w[i + 7];
		if (acc)
			return false;
	}
	return true;
}

/* Which pages of one chunk may hold data: all of them, unless pagemap says
 * an anonymous page was never populated. */
static void chunk_candidates(int pagemap, const uint8_t *base, uint64_t npages, bool anon,
			     uint64_t *entries)
{
	ssize_t want = (ssize_t)(npages * 8);

	if (anon && pagemap >= 0 &&
	    pread(pagemap, entries, (size_t)want, (off_t)((uintptr_t)base / STREAM_PAGE * 8)) ==
		    want)
		return;
	for (uint64_t i = 0; i < npages; i++)
		entries[i] = PAGEMAP_PRESENT;
}

/* One chunk: mark and checksum its non-zero pages, write them in runs. */
static int ram_save_chunk(struct ram_save *rs, uint64_t chunk, uint64_t *entries)
{
	const uint8_t *ram = rs->gm->map;
	uint64_t first = chunk * STREAM_CHUNK_PAGES;
	uint64_t n = MIN((uint64_t)STREAM_CHUNK_PAGES, rs->r->pages - first), run = 0, run_at = 0;
	uint32_t crc = 0;
	int ret = 0;

	chunk_candidates(rs->pagemap, ram + first * STREAM_PAGE, n, !rs->gm->file_backed, entries);
	for (uint64_t i = 0; i <= n && !ret; i++) {
		uint64_t pg = first + i;
		const uint8_t *p = ram + pg * STREAM_PAGE;
		bool data = i < n && (entries[i] & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED)) &&
			    !ram_page_is_zero(p);

		if (data) {
			rs->r->bitmap[pg / 64] |= 1ull << (pg % 64);
			rs->r->present++;
			crc = crc32c(crc, p, STREAM_PAGE);
			if (!run++)
				run_at = pg;
			continue;
		}
		if (run)
			ret = pwrite_full(rs->fd, ram + run_at * STREAM_PAGE, run * STREAM_PAGE,
					  rs->ram_off + run_at * STREAM_PAGE);
		run = 0;
	}
	rs->r->crc[chunk] = crc;
	return ret;
}

int ram_save(struct ram_save *rs)
{
	uint64_t entries[STREAM_CHUNK_PAGES];
	int ret = 0;

	rs->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	for (uint64_t c = 0; c < rs->r->nchunks && !ret; c++) {
		ret = ram_save_chunk(rs, c, entries);
		if (rs->progress)
			rs->progress(rs->opaque, (c + 1) * STREAM_CHUNK_PAGES * STREAM_PAGE,
				     rs->r->ram_size);
	}
	if (rs->pagemap >= 0)
		close(rs->pagemap);
	rs->pagemap = -1;
	return ret;
}

/* Read the stored pages of one chunk into RAM and check its checksum. */
static int ram_load_chunk(struct guest_mem *gm, int fd, uint64_t ram_off,
			  const struct stream_ram *r, uint64_t chunk)
{
	uint64_t first = chunk * STREAM_CHUNK_PAGES;
	uint64_t n = MIN((uint64_t)STREAM_CHUNK_PAGES, r->pages - first);
	uint8_t *ram = gm->map;
	uint32_t crc = 0;

	for (uint64_t i = 0; i < n; i++) {
		uint64_t pg = first + i;
		int ret;

		if (!stream_ram_present(r, pg))
			continue;
		ret = pread_full(fd, ram + pg * STREAM_PAGE, STREAM_PAGE,
				 ram_off + pg * STREAM_PAGE);
		if (ret)
			return ret;
		crc = crc32c(crc, ram + pg * STREAM_PAGE, STREAM_PAGE);
	}
	return crc == r->crc[chunk] ? 0 : -EBADMSG;
}

int ram_layout_check(const struct guest_mem *gm, const struct stream_ram *r, char *err,
		     size_t errlen)
{
	if (r->ram_size != gm->ram_size || r->ram_low != gm->ram_low ||
	    r->ram_high != gm->ram_high) {
		snprintf(err, errlen,
			 "RAM: the file holds %llu bytes laid out %llu+%llu; the VM has "
			 "%llu",
			 (unsigned long long)r->ram_size, (unsigned long long)r->ram_low,
			 (unsigned long long)r->ram_high, (unsigned long long)gm->ram_size);
		return -EINVAL;
	}
	return 0;
}

int ram_restore(struct guest_mem *gm, int fd, uint64_t ram_off, const struct stream_ram *r,
		bool eager, char *err, size_t errlen)
{
	int ret = ram_layout_check(gm, r, err, errlen);

	if (ret)
		return ret;
	if (!eager) {
		ret = gm_map_file(gm, fd, ram_off);
		if (!ret)
			return 0;
		kinfo("restore: cannot map the saved RAM (%s); reading it instead", strerror(-ret));
	}
	for (uint64_t c = 0; c < r->nchunks; c++) {
		ret = ram_load_chunk(gm, fd, ram_off, r, c);
		if (ret) {
			snprintf(err, errlen, "RAM chunk %llu (guest RAM offset %#llx): %s",
				 (unsigned long long)c,
				 (unsigned long long)(c * STREAM_CHUNK_PAGES * STREAM_PAGE),
				 ret == -EBADMSG ? "checksum mismatch (the file is damaged)"
						 : strerror(-ret));
			return ret == -EBADMSG ? -EINVAL : ret;
		}
	}
	return 0;
}
