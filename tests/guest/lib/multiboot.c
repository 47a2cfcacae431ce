/* Multiboot v1 information (Multiboot 0.6.96 section 3.3). Every pointer in
 * it comes from the loader and is checked before use. */
#include "guest.h"

#define MB_INFO_SIZE  0x80 /* whole v1 structure, through the framebuffer fields */
#define MB_MMAP_MAX   0x10000
#define MB_MODS_MAX   64
#define MB_DRIVES_MAX 0x10000

struct mb_module {
	uint32_t start, end, string, reserved;
};

static char cmdline_copy[MB_CMDLINE_MAX + 1];
static bool cmdline_done;

const struct mb_info *mb_info(void)
{
	if (boot_mb_magic != MB_BOOT_MAGIC || boot_mb_info == 0)
		return NULL;
	return (const struct mb_info *)(uintptr_t)boot_mb_info;
}

const char *mb_cmdline(void)
{
	const struct mb_info *mi = mb_info();

	if (!cmdline_done && mi && (mi->flags & MB_INFO_CMDLINE) && mi->cmdline) {
		const char *s = (const char *)(uintptr_t)mi->cmdline;
		size_t n = strnlen(s, MB_CMDLINE_MAX);

		memcpy(cmdline_copy, s, n);
		cmdline_copy[n] = '\0';
	}
	cmdline_done = true;
	return cmdline_copy;
}

static bool parse_uint(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	unsigned base = 10;

	if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
		n -= 2;
	}
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		unsigned d;

		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			return false;
		v = v * base + d;
	}
	*out = v;
	return true;
}

uint64_t mb_cmdline_uint(const char *key, uint64_t dflt)
{
	const char *s = mb_cmdline();
	size_t klen = strnlen(key, 64);

	while (*s) {
		size_t n = 0;
		uint64_t v;

		while (*s == ' ')
			s++;
		while (s[n] && s[n] != ' ')
			n++;
		if (n > klen + 1 && !memcmp(s, key, klen) && s[klen] == '=' &&
		    parse_uint(s + klen + 1, n - klen - 1, &v))
			return v;
		s += n;
	}
	return dflt;
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return alen && blen && a < b + blen && b < a + alen;
}

static bool string_used(uint32_t str, uint64_t addr, uint64_t len)
{
	return str &&
	       overlaps(addr, len, str, strnlen((const char *)(uintptr_t)str, MB_CMDLINE_MAX) + 1);
}

static bool mods_used(const struct mb_info *mi, uint64_t addr, uint64_t len)
{
	const struct mb_module *m = (const struct mb_module *)(uintptr_t)mi->mods_addr;
	uint32_t count = mi->mods_count < MB_MODS_MAX ? mi->mods_count : MB_MODS_MAX;

	if (overlaps(addr, len, mi->mods_addr, (uint64_t)count * sizeof(*m)))
		return true;
	for (uint32_t i = 0; i < count; i++) {
		if (m[i].end > m[i].start && overlaps(addr, len, m[i].start, m[i].end - m[i].start))
			return true;
		if (string_used(m[i].string, addr, len))
			return true;
	}
	return false;
}

bool mb_range_used(uint64_t addr, uint64_t len)
{
	extern char _load_start[], _end[];
	const struct mb_info *mi = mb_info();

	if (overlaps(addr, len, (uintptr_t)_load_start, (uint64_t)(_end - _load_start)))
		return true;
	if (!mi)
		return false;
	if (overlaps(addr, len, boot_mb_info, MB_INFO_SIZE))
		return true;
	if ((mi->flags & MB_INFO_CMDLINE) && string_used(mi->cmdline, addr, len))
		return true;
	if ((mi->flags & MB_INFO_LOADER) && string_used(mi->boot_loader_name, addr, len))
		return true;
	if ((mi->flags & MB_INFO_DRIVES) &&
	    overlaps(addr, len, mi->drives_addr,
		     mi->drives_length < MB_DRIVES_MAX ? mi->drives_length : MB_DRIVES_MAX))
		return true;
	if ((mi->flags & MB_INFO_MMAP) && overlaps(addr, len, mi->mmap_addr, mi->mmap_length))
		return true;
	if ((mi->flags & MB_INFO_MODS) && mi->mods_count && mods_used(mi, addr, len))
		return true;
	return false;
}

bool mb_range_available(uint64_t addr, uint64_t len)
{
	const struct mb_info *mi = mb_info();
	uint32_t off = 0, total;

	if (!mi)
		return true;
	if (!(mi->flags & MB_INFO_MMAP))
		return !(mi->flags & MB_INFO_MEM) || addr + len <= (uint64_t)mi->mem_lower * 1024;
	total = mi->mmap_length < MB_MMAP_MAX ? mi->mmap_length : MB_MMAP_MAX;
	/* Each entry's size field excludes itself; a size below 20 is bogus. */
	while (off + sizeof(struct mb_mmap_entry) <= total) {
		const struct mb_mmap_entry *e =
			(const struct mb_mmap_entry *)(uintptr_t)(mi->mmap_addr + off);

		if (e->size < 20)
			break;
		if (e->type == 1 && addr >= e->addr && addr + len <= e->addr + e->len &&
		    e->addr + e->len > e->addr)
			return true;
		off += e->size + 4;
	}
	return false;
}
