/* The guest's side of the i8042 for the unit tests (check_i8042.c,
 * check_ps2.c): the status/command port and the data port of the
 * controller in `k`, as a driver reads and writes them through dev_ops.
 * Header-only. */
#ifndef KESTREL_TEST_I8042_DRIVER_H
#define KESTREL_TEST_I8042_DRIVER_H

#include <stdint.h>

#include "kestrel/devices.h"
#include "fake_board.h"

enum { DATA = 0, CMD = 1 };
#define ST_OBF 0x01
#define ST_SYS 0x04
#define ST_A2  0x08
#define ST_AUX 0x20

static struct device *k;

static UNUSED_FN uint8_t status(void)
{
	return (uint8_t)dev_rd(k, CMD, 0, 1);
}

static UNUSED_FN uint8_t data(void)
{
	return (uint8_t)dev_rd(k, DATA, 0, 1);
}

static UNUSED_FN void cmd(uint8_t c)
{
	dev_wr(k, CMD, 0, 1, c);
}

static UNUSED_FN void put(uint8_t v)
{
	dev_wr(k, DATA, 0, 1, v);
}

#endif
