/* libFuzzer harness: the split-virtqueue walker (devices/synthetic/virtqueue.c) on guest
 * RAM the fuzzer writes. Input: byte 0 picks the queue size (2^(b%9)), byte
 * 1 the features, bytes 2-3 avail->idx, bytes 4-19 the first 8 avail ring
 * entries, then the descriptor table (at 0x1000) and after it whatever lies
 * from 0x4000 on (buffers, indirect tables). The used ring is at 0x3000.
 * Every chain popped must lie inside RAM; the walk must end. */
#include <stdint.h>
#include <string.h>

#include "kestrel/virtio.h"

#define RAM (64 * 1024)

static void put(uint8_t *ram, uint64_t at, const uint8_t **d, size_t *n, size_t len)
{
	size_t k = *n < len ? *n : len;

	memcpy(ram + at, *d, k);
	*d += k;
	*n -= k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guest_mem gm;
	static struct iovec iov[256];
	struct virtq vq;
	struct vq_elem e;
	uint16_t qsz;
	uint64_t features = 0;
	uint8_t *ram;

	if (size < 2)
		return 0;
	if (!gm.map && gm_init(&gm, 2 * 1024 * 1024, false))
		return 0;
	ram = gm_ram_ptr(&gm, 0, RAM); /* the whole backing, the VGA hole included */
	memset(ram, 0, RAM);
	qsz = (uint16_t)(1u << (data[0] % 9));
	if (data[1] & 1)
		features |= VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC);
	if (data[1] & 2)
		features |= VIRTIO_BIT(VIRTIO_F_EVENT_IDX);
	data += 2;
	size -= 2;
	put(ram, 0x2002, &data, &size, 2);	      /* avail->idx */
	put(ram, 0x2004, &data, &size, 16);	      /* avail->ring[0..7] */
	put(ram, 0x1000, &data, &size, 16u * qsz);    /* descriptor table */
	put(ram, 0x4000, &data, &size, RAM - 0x4000); /* buffers, tables */
	vq_init_empty(&vq);
	if (vq_init(&vq, &gm, qsz, 0x1000, 0x2000, 0x3000, features))
		return 0;
	for (int n = 0; n < 4 * qsz; n++) {
		int r = vq_pop(&vq, &e, iov, qsz);

		if (r <= 0)
			break;
		for (unsigned i = 0; i < e.out_num + e.in_num; i++) {
			uint8_t *p = e.iov[i].iov_base;

			/* Touch both ends: ASan would flag a buffer outside the mapping. */
			if (p < (uint8_t *)gm.map ||
			    p + e.iov[i].iov_len > (uint8_t *)gm.map + gm.map_size)
				__builtin_trap();
			(void)*(volatile uint8_t *)p;
			(void)*(volatile uint8_t *)(p + e.iov[i].iov_len - 1);
		}
		(void)vq_push(&vq, e.head, (uint32_t)e.in_len);
		vq_notify_off(&vq);
		(void)vq_notify_on(&vq);
	}
	pthread_mutex_destroy(&vq.lock);
	return 0;
}
