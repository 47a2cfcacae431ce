/* The device registry (struct dev_list in kestrel/device.h, walked by
 * src/machine.c): registration order, unique and well-formed ids, lookup by
 * id, realize/reset/resume in order and quiesce/destroy in reverse, reset
 * under the device's lock, and the machine-wide save/load that frames each
 * device's state with its id. Then every board device of the emulated PC
 * through save -> load into a fresh instance -> save (byte-identical), and
 * every corruption of its state refused with the device unchanged
 * (check_every_corruption in fake_board.h). The virtio devices have the
 * same checks in their own suites, with a driver. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kestrel/devices.h"
#include "kestrel/fw_cfg.h"
#include "kestrel/pci.h"
#include "kestrel/piix.h"
#include "kestrel/state.h"
#include "kestrel/vga.h"
#include "fake_board.h"

/* ---- fake devices that log what the registry does to them ---- */

static char trail[512];

static void log_op(const char *op, struct device *d)
{
	size_t n = strlen(trail);

	snprintf(trail + n, sizeof(trail) - n, "%s%s:%s", n ? " " : "", op, d->id);
}

struct fake_dev {
	struct device dev;
	uint32_t value; /* the state saved and loaded */
	int realize_ret;
	bool lock_held_in_reset;
};

#define FAKE_STATE_ID 0x46414b45 /* "FAKE" */

static int fake_realize(struct device *d)
{
	log_op("realize", d);
	return ((struct fake_dev *)d)->realize_ret;
}

static void fake_reset(struct device *d)
{
	struct fake_dev *f = (struct fake_dev *)d;

	/* The registry holds the lock: another trylock must fail. */
	f->lock_held_in_reset = pthread_mutex_trylock(&d->lock) != 0;
	if (!f->lock_held_in_reset)
		pthread_mutex_unlock(&d->lock);
	f->value = 0;
	log_op("reset", d);
}

static uint64_t fake_read(struct device *d, int region, uint64_t off, unsigned size)
{
	return 0;
}

static void fake_write(struct device *d, int region, uint64_t off, unsigned size, uint64_t v)
{
}

static void fake_quiesce(struct device *d)
{
	log_op("quiesce", d);
}

static int fake_resume(struct device *d)
{
	log_op("resume", d);
	return !strcmp(d->id, "b") ? -EIO : 0;
}

static int fake_save(struct device *d, struct state_buf *out)
{
	size_t mark = state_section_begin(out, FAKE_STATE_ID, 1);

	state_put_u32(out, ((struct fake_dev *)d)->value);
	state_section_end(out, mark);
	return out->error ? -ENOMEM : 0;
}

static int fake_load(struct device *d, struct state_buf *in)
{
	size_t end;
	uint32_t v;

	if (state_section_open(in, FAKE_STATE_ID, 1) < 0)
		return -EINVAL;
	end = state_section_body_end(in);
	v = state_get_u32(in);
	if (!state_section_done(in, end) || v > 1000)
		return -EINVAL;
	((struct fake_dev *)d)->value = v;
	return 0;
}

static void fake_destroy(struct device *d)
{
	log_op("destroy", d);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

static const struct dev_ops fake_ops = {
	.name = "fake",
	.realize = fake_realize,
	.reset = fake_reset,
	.read = fake_read,
	.write = fake_write,
	.quiesce = fake_quiesce,
	.resume = fake_resume,
	.save = fake_save,
	.load = fake_load,
	.destroy = fake_destroy,
};

static struct fake_dev *fake_new(uint32_t value)
{
	struct fake_dev *f = calloc(1, sizeof(*f));

	ck_assert_ptr_nonnull(f);
	device_init(&f->dev, &fake_ops);
	f->value = value;
	return f;
}

static struct dev_list list;

static void list_abc(void)
{
	memset(&list, 0, sizeof(list));
	trail[0] = '\0';
	ck_assert_int_eq(dev_list_add(&list, &fake_new(1)->dev, "a"), 0);
	ck_assert_int_eq(dev_list_add(&list, &fake_new(2)->dev, "b"), 0);
	ck_assert_int_eq(dev_list_add(&list, &fake_new(3)->dev, "c"), 0);
	trail[0] = '\0';
}

static void list_free(void)
{
	dev_list_destroy(&list);
}

START_TEST(test_order_and_lookup)
{
	struct fake_dev *x = fake_new(0);

	list_abc();
	ck_assert_uint_eq(list.n, 3);
	ck_assert_str_eq(list.dev[0]->id, "a");
	ck_assert_str_eq(list.dev[2]->id, "c");
	ck_assert_ptr_eq(dev_list_find(&list, "b"), list.dev[1]);
	ck_assert_ptr_null(dev_list_find(&list, "d"));
	ck_assert_ptr_null(dev_list_find(&list, NULL));
	/* Ids are unique, a device is registered once, ids are well-formed. */
	ck_assert_int_eq(dev_list_add(&list, &x->dev, "b"), -EEXIST);
	ck_assert_int_eq(dev_list_add(&list, list.dev[0], "z"), -EEXIST);
	ck_assert_int_eq(dev_list_add(&list, &x->dev, ""), -EINVAL);
	ck_assert_int_eq(dev_list_add(&list, &x->dev, NULL), -EINVAL);
	ck_assert_int_eq(dev_list_add(&list, &x->dev, "Net0"), -EINVAL);
	ck_assert_int_eq(dev_list_add(&list, &x->dev, "net 0"), -EINVAL);
	ck_assert_int_eq(dev_list_add(&list, &x->dev, "a-very-long-id-x"), -EINVAL);
	ck_assert_int_eq(dev_list_add(&list, NULL, "y"), -EINVAL);
	ck_assert_str_eq(x->dev.id, "");
	ck_assert_int_eq(dev_list_add(&list, &x->dev, "debug-exit"), 0);
	ck_assert_ptr_eq(dev_list_find(&list, "debug-exit"), &x->dev);
	list_free();
	ck_assert_str_eq(trail, "destroy:debug-exit destroy:c destroy:b destroy:a");
	ck_assert_uint_eq(list.n, 0);
}
END_TEST

START_TEST(test_full)
{
	struct fake_dev *extra = fake_new(0);
	char id[DEV_ID_MAX];

	memset(&list, 0, sizeof(list));
	for (unsigned i = 0; i < DEV_LIST_MAX; i++) {
		snprintf(id, sizeof(id), "d%u", i);
		ck_assert_int_eq(dev_list_add(&list, &fake_new(i)->dev, id), 0);
	}
	ck_assert_int_eq(dev_list_add(&list, &extra->dev, "more"), -ENOSPC);
	extra->dev.ops->destroy(&extra->dev);
	list_free();
}
END_TEST

START_TEST(test_walks)
{
	struct device *bad = NULL;

	list_abc();
	ck_assert_int_eq(dev_list_realize(&list, &bad), 0);
	dev_list_reset(&list);
	ck_assert(((struct fake_dev *)list.dev[1])->lock_held_in_reset);
	ck_assert_uint_eq(((struct fake_dev *)list.dev[2])->value, 0);
	ck_assert_str_eq(trail, "realize:a realize:b realize:c reset:a reset:b reset:c");
	trail[0] = '\0';
	/* Quiesce in reverse, once; resume in order, once; every device is
	 * resumed even after one fails, and the first error is returned. */
	dev_list_quiesce(&list);
	dev_list_quiesce(&list);
	ck_assert_int_eq(dev_list_resume(&list), -EIO);
	ck_assert_int_eq(dev_list_resume(&list), 0);
	ck_assert_str_eq(trail, "quiesce:c quiesce:b quiesce:a resume:a resume:b resume:c");
	/* A realize failure stops the walk and names the device. */
	trail[0] = '\0';
	((struct fake_dev *)list.dev[1])->realize_ret = -ENODEV;
	ck_assert_int_eq(dev_list_realize(&list, &bad), -ENODEV);
	ck_assert_ptr_eq(bad, list.dev[1]);
	ck_assert_str_eq(trail, "realize:a realize:b");
	list_free();
}
END_TEST

static struct state_buf save_list(void)
{
	struct state_buf b = { 0 };

	ck_assert_int_eq(dev_list_save(&list, &b), 0);
	b.pos = 0;
	return b;
}

START_TEST(test_save_load)
{
	struct state_buf s = { 0 }, t = { 0 };
	struct dev_list other = { 0 };

	list_abc();
	s = save_list();
	/* Into another list of the same ids, in another order: by id. */
	ck_assert_int_eq(dev_list_add(&other, &fake_new(0)->dev, "c"), 0);
	ck_assert_int_eq(dev_list_add(&other, &fake_new(0)->dev, "a"), 0);
	ck_assert_int_eq(dev_list_add(&other, &fake_new(0)->dev, "b"), 0);
	ck_assert_int_eq(dev_list_load(&other, &s), 0);
	ck_assert_uint_eq(((struct fake_dev *)other.dev[0])->value, 3);
	ck_assert_uint_eq(((struct fake_dev *)other.dev[1])->value, 1);
	ck_assert_uint_eq(((struct fake_dev *)other.dev[2])->value, 2);
	dev_list_destroy(&other);
	/* A device the stream does not have: -ENODATA. */
	ck_assert_int_eq(dev_list_add(&other, &fake_new(0)->dev, "a"), 0);
	ck_assert_int_eq(dev_list_add(&other, &fake_new(0)->dev, "b"), 0);
	ck_assert_int_eq(dev_list_add(&other, &fake_new(0)->dev, "c"), 0);
	ck_assert_int_eq(dev_list_add(&other, &fake_new(0)->dev, "d"), 0);
	s.pos = 0;
	ck_assert_int_eq(dev_list_load(&other, &s), -ENODATA);
	dev_list_destroy(&other);
	/* An id this machine lacks: -ENOENT. */
	ck_assert_int_eq(dev_list_add(&other, &fake_new(0)->dev, "a"), 0);
	ck_assert_int_eq(dev_list_add(&other, &fake_new(0)->dev, "b"), 0);
	s.pos = 0;
	ck_assert_int_eq(dev_list_load(&other, &s), -ENOENT);
	dev_list_destroy(&other);
	/* The same device twice, and a device's own refusal. */
	t = state_copy(&s, s.len);
	state_put_bytes(&t, s.data, s.len / 3); /* "a" again */
	ck_assert_int_eq(dev_list_load(&list, &t), -EINVAL);
	state_free(&t);
	((struct fake_dev *)list.dev[1])->value = 5000;
	t = save_list();
	((struct fake_dev *)list.dev[1])->value = 7;
	ck_assert_int_eq(dev_list_load(&list, &t), -EINVAL);
	ck_assert_uint_eq(((struct fake_dev *)list.dev[1])->value, 7);
	state_free(&t);
	/* Every cut of the stream is refused. */
	for (size_t n = 1; n < s.len; n++) {
		t = state_copy(&s, n);
		ck_assert_msg(dev_list_load(&list, &t) < 0, "cut at %zu accepted", n);
		state_free(&t);
	}
	state_free(&s);
	list_free();
}
END_TEST

/* ---- the board's emulated devices: round trip and corruption ---- */

static struct fake_irq irq;
static struct fake_ctl ctl;

static struct device *make_uart(void)
{
	struct irq_line l = fake_irq_line(&irq, 4);

	return uart_create(&l, -1);
}

static struct device *make_rtc(void)
{
	struct irq_line l = fake_irq_line(&irq, 8);

	return rtc_create(&l, fake_wall, 256 << 20, 0);
}

static struct device *make_i8042(void)
{
	struct irq_line l = fake_irq_line(&irq, 1);
	struct vm_ctl c = fake_vm_ctl(&ctl);

	return i8042_create(&l, NULL, &c);
}

static struct device *make_pm(void)
{
	struct irq_line l = fake_irq_line(&irq, 9);
	struct vm_ctl c = fake_vm_ctl(&ctl);

	return acpi_pm_create(&l, &c, fake_now_ns);
}

static struct device *make_debug_exit(void)
{
	struct vm_ctl c = fake_vm_ctl(&ctl);

	return debug_exit_create(&c);
}

static struct device *make_post(void)
{
	return sink_create("post");
}

static struct device *make_debugcon(void)
{
	return debugcon_create(-1, true);
}

/* Items need no guest memory; only DMA does. */
static struct device *make_fw_cfg(void)
{
	return fw_cfg_create(NULL);
}

static struct device *make_pci_host(void)
{
	return pci_host_create(NULL);
}

static struct device *make_vga(void)
{
	struct vga_opts o = { .vram_size = VGA_VRAM_MIN };
	struct device *d = NULL;

	return vga_create(&o, NULL, -1, NULL, &d) ? NULL : d;
}

static struct device *make_piix3(void)
{
	struct piix3_conf c = { .pirq_gsi_base = 16 };

	return piix3_create(&c);
}

static struct device *make_piix_ide(void)
{
	struct piix_ide_conf c = { .decode_on = true };

	return piix_ide_create(&c);
}

/* Guest writes that move a device off its power-on state, so that a round
 * trip carries something. */
static void stir_uart(struct device *d)
{
	dev_wr(d, 0, 3, 1, 0x80); /* LCR.DLAB */
	dev_wr(d, 0, 0, 1, 0x0c); /* divisor 12: 9600 baud */
	dev_wr(d, 0, 3, 1, 0x1b); /* 8E1 */
	dev_wr(d, 0, 1, 1, 0x03); /* IER */
	dev_wr(d, 0, 4, 1, 0x0b); /* MCR */
	dev_wr(d, 0, 7, 1, 0x5a); /* scratch */
}

static void stir_rtc(struct device *d)
{
	dev_wr(d, 0, 0, 1, 0x0b);
	dev_wr(d, 0, 1, 1, 0x06); /* binary, 24 h */
	dev_wr(d, 0, 0, 1, 0x40);
	dev_wr(d, 0, 1, 1, 0x77); /* a CMOS RAM byte */
}

static void stir_i8042(struct device *d)
{
	dev_wr(d, 1, 0, 1, 0x60); /* write the command byte */
	dev_wr(d, 0, 0, 1, 0x45);
	dev_wr(d, 1, 0, 1, 0xd1); /* write the output port */
	dev_wr(d, 0, 0, 1, 0xdf);
}

static void stir_pm(struct device *d)
{
	fake_ns += 123456789;
	dev_wr(d, 0, 2, 2, 0x0121); /* PM1_EN: TMR, PWRBTN, GBL */
	dev_wr(d, 0, 4, 2, 0x1402); /* PM1_CNT: SLP_TYP 5, BM_RLD */
	acpi_pm_power_button(d);
}

static void stir_fw_cfg(struct device *d)
{
	dev_wr(d, 0, 0, 2, 0x0001); /* select FW_CFG_ID */
	(void)device_read(d, 0, 1, 1);
	dev_wr(d, 1, 0, 4, 0x12345678); /* the DMA address's high half */
}

static void stir_pci_host(struct device *d)
{
	dev_wr(d, 0, 0, 4, 0x80000058); /* 00:00.0 PAM1 dword */
	dev_wr(d, 1, 1, 1, 0x33);
	dev_wr(d, 0, 0, 4, 0x80000004); /* COMMAND */
}

static void stir_vga(struct device *d)
{
	static const uint8_t regs[][2] = {
		{ 0x12, 0x67 },			/* misc: colour */
		{ 0x14, 0x02 }, { 0x15, 0x0f }, /* SR2 map mask */
		{ 0x1e, 0x06 }, { 0x1f, 0x05 }, /* GR6: graphics, A0000 64K */
		{ 0x1e, 0x08 }, { 0x1f, 0xff }, /* GR8 bit mask */
		{ 0x24, 0x0e }, { 0x25, 0x12 }, /* CR0E */
		{ 0x18, 0x07 }, { 0x19, 0x2a }, /* DAC entry 7, red */
	};

	for (unsigned i = 0; i < ARRAY_SIZE(regs); i++)
		dev_wr(d, VGA_REGION_PORTS, regs[i][0], 1, regs[i][1]);
	dev_wr(d, VGA_REGION_WINDOW, 0x40, 1, 0x5a); /* VRAM page 0 */
	dev_wr(d, VGA_REGION_DISPI, 0, 2, 1);	     /* DISPI XRES */
	dev_wr(d, VGA_REGION_DISPI, 1, 2, 800);
}

static void stir_piix3(struct device *d)
{
	pci_cfg_write(piix3_pci(d), 0x60, 4, 0x0b0a8a80); /* PIRQ routes */
	pci_cfg_write(piix3_pci(d), 0x4c, 1, 0x12);
}

static void stir_piix_ide(struct device *d)
{
	pci_cfg_write(piix_ide_pci(d), 0x20, 4, 0xc041); /* BMIBA */
	pci_cfg_write(piix_ide_pci(d), 0x40, 4, 0x80a3e307);
	pci_cfg_write(piix_ide_pci(d), PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MASTER);
}

struct board_case {
	const char *id;
	struct device *(*make)(void);
	void (*stir)(struct device *d);
	unsigned min_refused; /* flips the device must refuse, at least */
};

static const struct board_case board[] = {
	{ "com1", make_uart, stir_uart, 12 },
	{ "rtc", make_rtc, stir_rtc, 12 },
	{ "i8042", make_i8042, stir_i8042, 12 },
	{ "pm", make_pm, stir_pm, 12 },
	{ "debug-exit", make_debug_exit, NULL, 12 },
	{ "post", make_post, NULL, 12 },
	{ "pci-host", make_pci_host, stir_pci_host, 12 },
	{ "vga", make_vga, stir_vga, 12 },
	{ "debugcon", make_debugcon, NULL, 12 },
	{ "fw-cfg", make_fw_cfg, stir_fw_cfg, 12 },
	{ "piix3", make_piix3, stir_piix3, 12 },
	{ "piix3-ide", make_piix_ide, stir_piix_ide, 12 },
};

START_TEST(test_board_device_state)
{
	const struct board_case *c = &board[_i];
	struct device *a = c->make(), *b = c->make();
	struct state_buf s = { 0 };
	unsigned refused;

	fake_ns = 1000000000ULL;
	fake_secs = 1700000000;
	if (c->stir)
		c->stir(a);
	roundtrip(a, b, &s);
	refused = check_every_corruption(b, &s);
	printf("%s: state %zu bytes, %u of %zu byte flips refused, the rest loaded whole\n", c->id,
	       s.len, refused, s.len);
	/* At least the section header (id, version, length) is refused. */
	ck_assert_uint_ge(refused, c->min_refused);
	state_free(&s);
	a->ops->destroy(a);
	b->ops->destroy(b);
}
END_TEST

static Suite *registry_suite(void)
{
	Suite *s = suite_create("registry");
	TCase *dev;

	ADD_TCASE(s, "list", NULL, NULL, 0, test_order_and_lookup, test_full, test_walks,
		  test_save_load);
	dev = tcase_create("board");
	tcase_add_loop_test(dev, test_board_device_state, 0, (int)ARRAY_SIZE(board));
	tcase_set_timeout(dev, 60);
	suite_add_tcase(s, dev);
	return s;
}

int main(void)
{
	return run_suite(registry_suite());
}
