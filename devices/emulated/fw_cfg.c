/* QEMU's firmware configuration device on x86 I/O ports (QEMU
 * docs/specs/fw_cfg.rst; behaviour matched to hw/nvram/fw_cfg.c, which is
 * what SeaBIOS and OVMF are written against).
 *
 * Region 0, ports 0x510-0x511: a 16-bit write selects an item and rewinds its
 * offset; a byte read at either port returns the next byte of the item, 0
 * past its end or for a key with no item. Byte writes (the old write
 * channel) are ignored, as in QEMU since 2.4. Other widths are not decoded.
 *
 * Region 1, ports 0x514-0x51b: the DMA address register, big-endian. Reads
 * return "QEMU CFG". A 32-bit write at +0 sets the high half; one at +4 ORs
 * in the low half and runs the transfer, synchronously, after which the
 * register is 0 again. The guest's FWCfgDmaAccess {be32 control, be32 length,
 * be64 address} is copied out of guest RAM once, then the item bytes go to
 * guest RAM through gm_write: a range outside RAM (or wrapping) fails that
 * step and sets the error bit, as QEMU's dma_memory_write failure does.
 * Reads past the item's end zero the guest range, as in QEMU. No item is
 * writable, so a DMA write always sets the error bit. The control word is
 * written back (0 or the error bit) at the structure's address; if the
 * structure itself is not in RAM only that write is attempted. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/byteorder.h"
#include "kestrel/fw_cfg.h"
#include "kestrel/state.h"
#include "emu.h"

#define FW_CFG_SLOTS	      (FW_CFG_FILE_FIRST + FW_CFG_MAX_FILES)
#define FW_CFG_INVALID	      0xffff
#define FW_CFG_DMA_ACCESS_LEN 16
#define FW_CFG_STATE_ID	      0x46574346 /* "FWCF" */
#define FW_CFG_STATE_VERSION  1

struct fw_cfg_item {
	uint8_t *data;
	uint32_t len;
};

struct fw_cfg_regs {
	uint16_t cur;	   /* selected key, or FW_CFG_INVALID */
	uint32_t offset;   /* never past the selected item's length */
	uint64_t dma_addr; /* high half latched by a write at +0 */
};

struct fw_cfg {
	struct device dev;
	const struct guest_mem *gm;
	/* [0] generic keys, [1] arch keys (bit 15); files live in [0] from 0x20. */
	struct fw_cfg_item items[2][FW_CFG_SLOTS];
	char names[FW_CFG_MAX_FILES][FW_CFG_NAME_LEN];
	unsigned nfiles;
	struct fw_cfg_regs r;
};

static struct fw_cfg *to_fw(struct device *dev)
{
	return (struct fw_cfg *)dev;
}

static struct fw_cfg_item *fw_item(struct fw_cfg *fw, uint16_t key)
{
	if (key == FW_CFG_INVALID)
		return NULL;
	return &fw->items[!!(key & FW_CFG_ARCH_LOCAL)][key & FW_CFG_ENTRY_MASK];
}

/* Keys past the slots select nothing (QEMU: FW_CFG_INVALID). Bit 14, the
 * old write channel, selects the same item. */
static void fw_select(struct fw_cfg *fw, uint16_t key)
{
	fw->r.offset = 0;
	fw->r.cur = (key & FW_CFG_ENTRY_MASK) < FW_CFG_SLOTS ? key : FW_CFG_INVALID;
}

static uint8_t fw_data_read(struct fw_cfg *fw)
{
	const struct fw_cfg_item *e = fw_item(fw, fw->r.cur);

	if (!e || !e->data || fw->r.offset >= e->len)
		return 0;
	return e->data[fw->r.offset++];
}

/* ---- DMA ---- */

/* Zero [gpa, gpa+len) of guest RAM: what QEMU's dma_memory_set does for a
 * read past the item's end. The range is the guest's own RAM, checked whole. */
static int fw_dma_zero(const struct fw_cfg *fw, uint64_t gpa, uint64_t len)
{
	void *p = gm_ptr(fw->gm, gpa, len);

	if (!p)
		return -EFAULT;
	memset(p, 0, len);
	gm_mark_dirty(fw->gm, gpa, len);
	return 0;
}

/* One step of the transfer loop; returns the bytes it covered. */
static uint32_t fw_dma_step(struct fw_cfg *fw, uint32_t ctl, uint64_t addr, uint32_t len,
			    uint32_t *status)
{
	const struct fw_cfg_item *e = fw_item(fw, fw->r.cur);
	uint32_t n;

	if (!e || !e->data || fw->r.offset >= e->len) {
		if ((ctl & FW_CFG_DMA_CTL_READ) && fw_dma_zero(fw, addr, len))
			*status |= FW_CFG_DMA_CTL_ERROR;
		if (!(ctl & FW_CFG_DMA_CTL_READ) && (ctl & FW_CFG_DMA_CTL_WRITE))
			*status |= FW_CFG_DMA_CTL_ERROR;
		return len;
	}
	n = MIN(len, e->len - fw->r.offset);
	if (ctl & FW_CFG_DMA_CTL_READ) {
		if (gm_write(fw->gm, addr, e->data + fw->r.offset, n))
			*status |= FW_CFG_DMA_CTL_ERROR;
	} else if (ctl & FW_CFG_DMA_CTL_WRITE) {
		*status |= FW_CFG_DMA_CTL_ERROR; /* no item is writable */
	}
	fw->r.offset += n;
	return n;
}

static void fw_dma_status(struct fw_cfg *fw, uint64_t at, uint32_t status)
{
	uint8_t be[4];

	put_be32(be, status);
	/* The structure may be partly outside RAM: then there is nowhere to
	 * report, as in QEMU, whose stl_be_dma fails silently. */
	(void)!gm_write(fw->gm, at, be, sizeof(be));
}

static void fw_dma_transfer(struct fw_cfg *fw)
{
	uint64_t at = fw->r.dma_addr, addr;
	uint8_t acc[FW_CFG_DMA_ACCESS_LEN];
	uint32_t ctl, len, status = 0;

	fw->r.dma_addr = 0;
	if (gm_read(fw->gm, at, acc, sizeof(acc))) {
		fw_dma_status(fw, at, FW_CFG_DMA_CTL_ERROR);
		return;
	}
	ctl = get_be32(acc);
	len = get_be32(acc + 4);
	addr = get_be64(acc + 8);
	if (ctl & FW_CFG_DMA_CTL_SELECT)
		fw_select(fw, (uint16_t)(ctl >> 16));
	if (!(ctl & (FW_CFG_DMA_CTL_READ | FW_CFG_DMA_CTL_WRITE | FW_CFG_DMA_CTL_SKIP)))
		len = 0;
	/* Each step either reaches the item's end or covers the rest, so this
	 * runs at most twice; the sums may wrap only where gm_* already failed. */
	while (len && !(status & FW_CFG_DMA_CTL_ERROR)) {
		uint32_t n = fw_dma_step(fw, ctl, addr, len, &status);

		addr += n;
		len -= n;
	}
	fw_dma_status(fw, at, status);
}

static uint64_t fw_dma_read(uint64_t off, unsigned size)
{
	uint64_t v = 0;

	/* The register reads as the big-endian signature: byte i is sig[i]. */
	for (unsigned i = 0; i < size && off + i < FW_CFG_DMA_LEN; i++)
		v |= ((FW_CFG_DMA_SIGNATURE >> (8 * (7 - (off + i)))) & 0xff) << (8 * i);
	return v;
}

/* The guest writes the address big-endian (outl of cpu_to_be32(addr)), so
 * the port value is the address byte-swapped. */
static void fw_dma_write(struct fw_cfg *fw, uint64_t off, unsigned size, uint64_t val)
{
	if (size == 4 && off == 0) {
		fw->r.dma_addr = (uint64_t)__builtin_bswap32((uint32_t)val) << 32;
	} else if (size == 4 && off == 4) {
		fw->r.dma_addr |= __builtin_bswap32((uint32_t)val);
		fw_dma_transfer(fw);
	} else if (size == 8 && off == 0) {
		fw->r.dma_addr = __builtin_bswap64(val);
		fw_dma_transfer(fw);
	}
}

/* ---- bus ops ---- */

static uint64_t fw_read(struct device *dev, int region, uint64_t off, unsigned size)
{
	struct fw_cfg *fw = to_fw(dev);

	if (region == FW_CFG_REGION_DMA)
		return fw_dma_read(off, size);
	if (size != 1)
		return emu_ones(size);
	return fw_data_read(fw);
}

static void fw_write(struct device *dev, int region, uint64_t off, unsigned size, uint64_t val)
{
	struct fw_cfg *fw = to_fw(dev);

	if (region == FW_CFG_REGION_DMA)
		fw_dma_write(fw, off, size, val);
	else if (size == 2)
		fw_select(fw, (uint16_t)val);
}

static void fw_reset(struct device *dev)
{
	struct fw_cfg *fw = to_fw(dev);

	fw_select(fw, FW_CFG_SIGNATURE);
	fw->r.dma_addr = 0;
}

/* Only the registers: the items are the board's and are rebuilt from the
 * configuration on the loading side, as QEMU's vmstate_fw_cfg does. */
static int fw_save(struct device *dev, struct state_buf *out)
{
	const struct fw_cfg_regs *r = &to_fw(dev)->r;
	size_t mark = state_section_begin(out, FW_CFG_STATE_ID, FW_CFG_STATE_VERSION);

	state_put_u16(out, r->cur);
	state_put_u32(out, r->offset);
	state_put_u64(out, r->dma_addr);
	state_section_end(out, mark);
	return out->error ? -ENOMEM : 0;
}

static bool fw_regs_valid(struct fw_cfg *fw, const struct fw_cfg_regs *r)
{
	const struct fw_cfg_item *e;

	if (r->cur != FW_CFG_INVALID && (r->cur & FW_CFG_ENTRY_MASK) >= FW_CFG_SLOTS)
		return false;
	e = fw_item(fw, r->cur);
	return r->offset <= (e ? e->len : 0) && !(uint32_t)r->dma_addr;
}

static int fw_load(struct device *dev, struct state_buf *in)
{
	struct fw_cfg *fw = to_fw(dev);
	struct fw_cfg_regs r;
	size_t end;

	if (state_section_open(in, FW_CFG_STATE_ID, FW_CFG_STATE_VERSION) < 0)
		return -EINVAL;
	end = emu_section_body_end(in);
	r.cur = state_get_u16(in);
	r.offset = state_get_u32(in);
	r.dma_addr = state_get_u64(in);
	if (!emu_section_done(in, end) || !fw_regs_valid(fw, &r))
		return -EINVAL;
	fw->r = r;
	return 0;
}

static void fw_destroy(struct device *dev)
{
	struct fw_cfg *fw = to_fw(dev);

	for (int a = 0; a < 2; a++)
		for (int k = 0; k < FW_CFG_SLOTS; k++)
			free(fw->items[a][k].data);
	pthread_mutex_destroy(&dev->lock);
	free(fw);
}

static const struct dev_ops fw_cfg_ops = {
	.name = "fw_cfg",
	.reset = fw_reset,
	.read = fw_read,
	.write = fw_write,
	.save = fw_save,
	.load = fw_load,
	.destroy = fw_destroy,
};

/* ---- the board's side: adding items ---- */

static int fw_set_item(struct fw_cfg_item *e, const void *data, size_t len)
{
	uint8_t *copy;

	if (len > FW_CFG_MAX_ITEM)
		return -EINVAL;
	copy = malloc(len ? len : 1);
	if (!copy)
		return -ENOMEM;
	if (len)
		memcpy(copy, data, len);
	free(e->data);
	e->data = copy;
	e->len = (uint32_t)len;
	return 0;
}

static int fw_add_locked(struct fw_cfg *fw, uint16_t key, const void *data, size_t len)
{
	unsigned idx = key & FW_CFG_ENTRY_MASK;
	struct fw_cfg_item *e;

	if ((key & FW_CFG_WRITE_CHANNEL) || idx >= FW_CFG_FILE_FIRST)
		return -EINVAL;
	e = fw_item(fw, key);
	if (e->data)
		return -EEXIST;
	return fw_set_item(e, data, len);
}

int fw_cfg_add_bytes(struct device *dev, uint16_t key, const void *data, size_t len)
{
	int ret;

	pthread_mutex_lock(&dev->lock);
	ret = fw_add_locked(to_fw(dev), key, data, len);
	pthread_mutex_unlock(&dev->lock);
	return ret;
}

int fw_cfg_add_u16(struct device *dev, uint16_t key, uint16_t v)
{
	uint8_t le[2];

	put_le16(le, v);
	return fw_cfg_add_bytes(dev, key, le, sizeof(le));
}

int fw_cfg_add_u32(struct device *dev, uint16_t key, uint32_t v)
{
	uint8_t le[4];

	put_le32(le, v);
	return fw_cfg_add_bytes(dev, key, le, sizeof(le));
}

int fw_cfg_add_u64(struct device *dev, uint16_t key, uint64_t v)
{
	uint8_t le[8];

	put_le64(le, v);
	return fw_cfg_add_bytes(dev, key, le, sizeof(le));
}

/* FW_CFG_FILE_DIR: be32 count, then {be32 size, be16 select, u16 0, name[56]}. */
static int fw_rebuild_dir(struct fw_cfg *fw)
{
	size_t len = 4 + (size_t)fw->nfiles * FW_CFG_DIR_ENTRY_LEN;
	uint8_t *dir = calloc(1, len);
	struct fw_cfg_item *e = &fw->items[0][FW_CFG_FILE_DIR];

	if (!dir)
		return -ENOMEM;
	put_be32(dir, fw->nfiles);
	for (unsigned i = 0; i < fw->nfiles; i++) {
		uint8_t *f = dir + 4 + i * FW_CFG_DIR_ENTRY_LEN;

		put_be32(f, fw->items[0][FW_CFG_FILE_FIRST + i].len);
		put_be16(f + 4, (uint16_t)(FW_CFG_FILE_FIRST + i));
		memcpy(f + 8, fw->names[i], FW_CFG_NAME_LEN);
	}
	free(e->data);
	e->data = dir;
	e->len = (uint32_t)len;
	return 0;
}

/* Insert at the name's sorted place, moving later files up one selector. */
static int fw_add_file_locked(struct fw_cfg *fw, const char *name, const void *data, size_t len)
{
	struct fw_cfg_item item = { 0 }, *files = &fw->items[0][FW_CFG_FILE_FIRST];
	size_t nlen = strnlen(name, FW_CFG_NAME_LEN);
	unsigned at = fw->nfiles;
	int ret;

	if (!nlen || nlen >= FW_CFG_NAME_LEN)
		return -EINVAL;
	for (unsigned i = 0; i < fw->nfiles; i++)
		if (!strcmp(fw->names[i], name))
			return -EEXIST;
	if (fw->nfiles == FW_CFG_MAX_FILES)
		return -ENOSPC;
	ret = fw_set_item(&item, data, len);
	if (ret)
		return ret;
	while (at > 0 && strcmp(name, fw->names[at - 1]) < 0)
		at--;
	memmove(&files[at + 1], &files[at], (fw->nfiles - at) * sizeof(*files));
	memmove(fw->names[at + 1], fw->names[at], (fw->nfiles - at) * FW_CFG_NAME_LEN);
	files[at] = item;
	memset(fw->names[at], 0, FW_CFG_NAME_LEN);
	memcpy(fw->names[at], name, nlen);
	fw->nfiles++;
	return fw_rebuild_dir(fw);
}

int fw_cfg_add_file(struct device *dev, const char *name, const void *data, size_t len)
{
	int ret;

	if (!name)
		return -EINVAL;
	pthread_mutex_lock(&dev->lock);
	ret = fw_add_file_locked(to_fw(dev), name, data, len);
	pthread_mutex_unlock(&dev->lock);
	return ret;
}

/* QEMU's fw_cfg_common_realize: the signature and the feature bits. */
struct device *fw_cfg_create(const struct guest_mem *gm)
{
	static const char sig[4] = { 'Q', 'E', 'M', 'U' };
	struct fw_cfg *fw = calloc(1, sizeof(*fw));

	if (!fw)
		return NULL;
	device_init(&fw->dev, &fw_cfg_ops);
	fw->gm = gm;
	if (fw_add_locked(fw, FW_CFG_SIGNATURE, sig, sizeof(sig)) ||
	    fw_cfg_add_u32(&fw->dev, FW_CFG_ID, FW_CFG_VERSION | FW_CFG_VERSION_DMA) ||
	    fw_rebuild_dir(fw)) {
		fw_destroy(&fw->dev);
		return NULL;
	}
	fw_reset(&fw->dev);
	return &fw->dev;
}
