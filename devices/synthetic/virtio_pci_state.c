/* virtio-pci transport state: the registry's quiesce, resume, save and load
 * (kestrel/device.h) for the function virtio_pci.c emulates.
 *
 * Section {VPCI, 1}: the PCI function (pci_dev_save: {PCIF, 2}, config
 * space — COMMAND's Bus Master and INTx Disable, where BAR 0 decodes, the
 * MSI-X control word — and the INTx level), the MSI-X table and pending bits
 * (msix_save: {MSIX, 1}), the identity (device id, queue count, device
 * features, largest queue size), the common configuration, each queue's
 * layout and position (struct virtq_state), then the device model's own
 * section. A queue is saved only at rest: every chain taken from it has
 * been returned (quiesce), so last_avail == used idx for each live queue and
 * nothing is in flight. docs/devices.md has the byte layout. */
#include <errno.h>
#include <stdlib.h>

#include "kestrel/state.h"
#include "virtio_pci_priv.h"

#define VPCI_STATE_ID		0x56504349 /* "VPCI" */
#define VPCI_STATE_VERSION	1
#define VPCI_SF_STARTED		1
#define VPCI_SF_NEEDS_RESET	2
#define VPCI_QF_ENABLED		1
#define VPCI_QF_SIGNALLED_VALID 2
#define VPCI_QF_BROKEN		4
#define VPCI_STATUS_BITS                                                              \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK | \
	 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_FAILED)

/* What a load parsed, before anything changes. */
struct vpci_saved {
	struct pci_dev_state pci;
	struct msix_state msix;
	uint32_t dfselect, gfselect, config_generation;
	uint64_t driver_features;
	uint8_t status, flags, isr;
	uint16_t queue_select, config_vector;
	struct vpci_queue q[VPCI_MAX_QUEUES]; /* the driver's fields only */
	struct virtq_state qs[VPCI_MAX_QUEUES];
};

void vpci_quiesce(struct device *dev)
{
	struct virtio_dev *t = to_vpci(dev);

	pthread_mutex_lock(&t->dev.lock);
	if (!t->quiesced && t->started && t->ops->quiesce)
		t->ops->quiesce(t->opaque);
	t->quiesced = true;
	pthread_mutex_unlock(&t->dev.lock);
}

int vpci_resume(struct device *dev)
{
	struct virtio_dev *t = to_vpci(dev);
	int ret = 0;

	pthread_mutex_lock(&t->dev.lock);
	if (t->quiesced && t->started && t->ops->resume)
		ret = t->ops->resume(t->opaque);
	t->quiesced = false;
	if (ret) {
		t->started = false;
		virtio_set_needs_reset(t, "the device could not resume");
	}
	pthread_mutex_unlock(&t->dev.lock);
	return ret;
}

static void vpci_save_queue(struct virtio_dev *t, unsigned q, struct state_buf *out)
{
	const struct vpci_queue *vq = &t->q[q];
	struct virtq_state st;

	vq_state_get(&t->vq[q], &st);
	state_put_u16(out, vq->size);
	state_put_u16(out, vq->vector);
	state_put_u64(out, vq->desc);
	state_put_u64(out, vq->driver);
	state_put_u64(out, vq->device);
	state_put_u16(out, st.last_avail);
	state_put_u16(out, st.used_idx);
	state_put_u16(out, st.signalled_used);
	state_put_u8(out, (vq->enabled ? VPCI_QF_ENABLED : 0) |
				  (st.signalled_valid ? VPCI_QF_SIGNALLED_VALID : 0) |
				  (st.broken ? VPCI_QF_BROKEN : 0));
}

/* dev.lock held (the registry). */
int vpci_save(struct device *dev, struct state_buf *out)
{
	struct virtio_dev *t = to_vpci(dev);
	size_t mark;
	int ret;

	if (t->started && !t->quiesced)
		return -EBUSY;
	mark = state_section_begin(out, VPCI_STATE_ID, VPCI_STATE_VERSION);
	ret = pci_dev_save(&t->pdev, out);
	ret = ret ?: msix_save(&t->msix, out);
	state_put_u16(out, t->info.device_id);
	state_put_u16(out, (uint16_t)t->info.num_queues);
	state_put_u64(out, t->dev_features);
	state_put_u16(out, t->info.queue_size);
	state_put_u32(out, t->dfselect);
	state_put_u32(out, t->gfselect);
	state_put_u64(out, t->driver_features);
	state_put_u8(out, t->status);
	state_put_u8(out, (t->started ? VPCI_SF_STARTED : 0) |
				  (atomic_load(&t->needs_reset) ? VPCI_SF_NEEDS_RESET : 0));
	state_put_u16(out, t->queue_select);
	state_put_u32(out, atomic_load(&t->config_generation));
	pthread_mutex_lock(&t->irq_lock);
	state_put_u16(out, t->config_vector);
	state_put_u8(out, t->isr);
	pthread_mutex_unlock(&t->irq_lock);
	for (unsigned q = 0; q < t->info.num_queues; q++)
		vpci_save_queue(t, q, out);
	if (!ret && t->ops->save)
		ret = t->ops->save(t->opaque, out);
	state_section_end(out, mark);
	return ret ? ret : out->error ? -ENOMEM : 0;
}

static bool vpci_vector_valid(const struct virtio_dev *t, uint16_t v)
{
	return v < t->msix.nvec || v == VIRTIO_MSI_NO_VECTOR;
}

/* One queue, checked as the driver's programming would be (vq_init's
 * checks on the rings of a live queue), and at rest. */
static int vpci_parse_queue(const struct virtio_dev *t, const struct vpci_saved *sv,
			    struct state_buf *in, struct vpci_queue *vq, struct virtq_state *st)
{
	uint8_t f;

	vq->size = state_get_u16(in);
	vq->vector = state_get_u16(in);
	vq->desc = state_get_u64(in);
	vq->driver = state_get_u64(in);
	vq->device = state_get_u64(in);
	st->last_avail = state_get_u16(in);
	st->used_idx = state_get_u16(in);
	st->signalled_used = state_get_u16(in);
	f = state_get_u8(in);
	vq->enabled = f & VPCI_QF_ENABLED;
	st->signalled_valid = f & VPCI_QF_SIGNALLED_VALID;
	st->broken = f & VPCI_QF_BROKEN;
	if (in->error || f & ~(VPCI_QF_ENABLED | VPCI_QF_SIGNALLED_VALID | VPCI_QF_BROKEN) ||
	    !vpci_vector_valid(t, vq->vector))
		return -EINVAL;
	if (!vq->enabled) /* a queue the driver has not enabled has no position */
		return st->last_avail || st->used_idx || st->signalled_used || f ? -EINVAL : 0;
	if (!(sv->status & VIRTIO_STATUS_FEATURES_OK) || vq->size > t->info.queue_size ||
	    vq_check(t->gm, vq->size, vq->desc, vq->driver, vq->device))
		return -EINVAL;
	/* A chain in flight: not saved at rest. Only a queue the device gave
	 * up on (broken, or the device needs a reset) may hold some, and never
	 * more than the ring has. */
	if ((uint16_t)(st->last_avail - st->used_idx) > vq->size)
		return -EINVAL;
	if (st->last_avail != st->used_idx && !st->broken && !(sv->flags & VPCI_SF_NEEDS_RESET))
		return -EINVAL;
	if (st->signalled_valid && !(sv->driver_features & VIRTIO_BIT(VIRTIO_F_EVENT_IDX)))
		return -EINVAL;
	return 0;
}

/* The common configuration, checked against what a driver could have
 * reached through the registers and 3.1.1's order. */
static int vpci_parse_common(const struct virtio_dev *t, struct state_buf *in,
			     struct vpci_saved *sv)
{
	bool started;

	sv->dfselect = state_get_u32(in);
	sv->gfselect = state_get_u32(in);
	sv->driver_features = state_get_u64(in);
	sv->status = state_get_u8(in);
	sv->flags = state_get_u8(in);
	sv->queue_select = state_get_u16(in);
	sv->config_generation = state_get_u32(in);
	sv->config_vector = state_get_u16(in);
	sv->isr = state_get_u8(in);
	started = sv->flags & VPCI_SF_STARTED;
	if (in->error || sv->status & ~VPCI_STATUS_BITS ||
	    sv->flags & ~(VPCI_SF_STARTED | VPCI_SF_NEEDS_RESET) ||
	    sv->driver_features & ~t->dev_features || sv->isr & ~(ISR_QUEUE | ISR_CONFIG) ||
	    !vpci_vector_valid(t, sv->config_vector))
		return -EINVAL;
	/* 4.1.4.5: INTA# follows ISR, so the level the PCI section carries must
	 * be the one this ISR drives. */
	if (sv->pci.intx_level != (sv->isr != 0))
		return -EINVAL;
	if ((sv->status & VIRTIO_STATUS_FEATURES_OK) &&
	    !(sv->driver_features & VIRTIO_BIT(VIRTIO_F_VERSION_1)))
		return -EINVAL;
	if (started &&
	    !((sv->status & VIRTIO_STATUS_DRIVER_OK) && (sv->status & VIRTIO_STATUS_FEATURES_OK)))
		return -EINVAL;
	return 0;
}

/* The transport's own fields, after the PCI and MSI-X sections. */
static int vpci_parse(const struct virtio_dev *t, struct state_buf *in, struct vpci_saved *sv)
{
	if (state_get_u16(in) != t->info.device_id || state_get_u16(in) != t->info.num_queues ||
	    state_get_u64(in) != t->dev_features || state_get_u16(in) != t->info.queue_size ||
	    in->error)
		return -EINVAL; /* another device, or another configuration of it */
	if (vpci_parse_common(t, in, sv))
		return -EINVAL;
	for (unsigned q = 0; q < t->info.num_queues; q++)
		if (vpci_parse_queue(t, sv, in, &sv->q[q], &sv->qs[q]))
			return -EINVAL;
	return 0;
}

/* Everything checked: replace the state. The PCI core first (BAR 0 decoded
 * where the loaded config space says, bar_remap moving the ioeventfds with
 * it; INTx Disable, the INTx level and MSI-X enable/mask from config space),
 * then the MSI-X table and its routes, then the transport. */
static void vpci_commit(struct virtio_dev *t, struct vpci_saved *sv)
{
	uint16_t cmd;

	/* Messages held by the device being replaced must not go out when the
	 * loaded config space unmasks them: the table loaded next has its own. */
	msix_clear_pending(&t->msix);
	pci_dev_commit(&t->pdev, &sv->pci);
	msix_commit(&t->msix, &sv->msix);
	cmd = pci_get_u16(&t->pdev, PCI_COMMAND);
	t->dfselect = sv->dfselect;
	t->gfselect = sv->gfselect;
	t->driver_features = sv->driver_features;
	t->status = sv->status;
	t->started = sv->flags & VPCI_SF_STARTED;
	t->quiesced = t->started; /* resume() starts it */
	t->queue_select = sv->queue_select;
	atomic_store(&t->config_generation, sv->config_generation);
	atomic_store(&t->needs_reset, (sv->flags & VPCI_SF_NEEDS_RESET) != 0);
	for (unsigned q = 0; q < t->info.num_queues; q++) {
		struct vpci_queue *vq = &t->q[q];

		vq->size = sv->q[q].size;
		vq->enabled = sv->q[q].enabled;
		vq->desc = sv->q[q].desc;
		vq->driver = sv->q[q].driver;
		vq->device = sv->q[q].device;
		vq_reset(&t->vq[q]);
		if (vq->enabled && vq_restore(&t->vq[q], t->gm, vq->size, vq->desc, vq->driver,
					      vq->device, t->driver_features, &sv->qs[q]))
			vq->enabled = false; /* cannot happen: vpci_parse_queue checked it */
	}
	pthread_mutex_lock(&t->irq_lock);
	for (unsigned q = 0; q < t->info.num_queues; q++)
		t->q[q].vector = sv->q[q].vector;
	t->config_vector = sv->config_vector;
	t->isr = sv->isr;
	/* Off a bus (unit tests) the function may always DMA, as when created. */
	vpci_bus_master(t, (cmd & PCI_COMMAND_MASTER) || t->pdev.slot < 0);
	vpci_intx_update(t);
	pthread_mutex_unlock(&t->irq_lock);
}

/* Where the section starting at in->pos ends, without reading it. */
static size_t vpci_model_section_end(const struct state_buf *in)
{
	uint32_t len = 0;

	if (in->error || in->pos > in->len || in->len - in->pos < 12)
		return (size_t)-1;
	for (unsigned i = 0; i < 4; i++)
		len |= (uint32_t)in->data[in->pos + 8 + i] << (8 * i);
	return in->pos + 12 + len;
}

/* dev.lock held (the registry). Every section is checked before anything
 * changes: pci_dev_parse, msix_parse, the transport's fields, and last the
 * model's, which validates before it changes anything, so that after it
 * the commits cannot fail. */
int vpci_load(struct device *dev, struct state_buf *in)
{
	struct virtio_dev *t = to_vpci(dev);
	struct vpci_saved *sv;
	bool msix_parsed = false;
	size_t end;
	int ret;

	if (t->started && !t->quiesced)
		return -EBUSY;
	if (state_section_open(in, VPCI_STATE_ID, VPCI_STATE_VERSION) < 0)
		return -EINVAL;
	end = state_section_body_end(in);
	sv = calloc(1, sizeof(*sv));
	if (!sv)
		return -ENOMEM;
	ret = pci_dev_parse(&t->pdev, in, &sv->pci) ? -EINVAL : 0;
	if (!ret) {
		ret = msix_parse(&t->msix, in, &sv->msix);
		msix_parsed = ret == 0;
	}
	ret = ret ?: vpci_parse(t, in, sv);
	if (!ret && t->ops->load) {
		/* The model's section must be the rest of ours, checked before
		 * the model changes anything. */
		ret = vpci_model_section_end(in) == end ? 0 : -EINVAL;
		ret = ret
			      ?: t->ops->load(t->opaque, in, sv->driver_features,
					      sv->flags & VPCI_SF_STARTED);
	}
	if (!ret && !state_section_done(in, end))
		ret = -EINVAL;
	if (!ret)
		vpci_commit(t, sv);
	else if (msix_parsed)
		msix_state_free(&sv->msix);
	free(sv);
	return ret;
}
