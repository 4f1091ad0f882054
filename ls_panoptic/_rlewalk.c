/* ls_panoptic._rlewalk: the record walk of Label Studio's brush RLE, in C.
 *
 * The bit format is described at the top of ls_panoptic/rle.py. runs() walks the records one
 * after the other (each record's length is in its own header) and writes the runs of pixels
 * whose alpha word passes the threshold. It answers only for streams the numpy walk in rle.py
 * decodes; for anything else it returns None and rle.py takes the numpy path, which raises the
 * RLEError that names the problem. Every read is checked against the end of the stream, every
 * size against overflow; memory is bounded by the stream's length.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_BITS 53
#define WORD_BITS 8
#define MAX_WORDS 0xFFFFFFFFu /* num is a 32-bit field */
#define FIRST_CAPACITY 256

typedef struct {
    int64_t *starts;
    int64_t *stops;
    size_t size;
    size_t capacity;
} Runs;

typedef enum { WALK_OK, WALK_INVALID, WALK_NO_MEMORY } WalkResult;

static int runs_push(Runs *runs, int64_t start, int64_t stop) {
    if (runs->size == runs->capacity) {
        size_t capacity = runs->capacity ? runs->capacity * 2 : FIRST_CAPACITY;
        if (capacity > SIZE_MAX / sizeof(int64_t)) {
            return -1;
        }
        int64_t *starts = realloc(runs->starts, capacity * sizeof(int64_t));
        if (starts == NULL) {
            return -1;
        }
        runs->starts = starts;
        int64_t *stops = realloc(runs->stops, capacity * sizeof(int64_t));
        if (stops == NULL) {
            return -1;
        }
        runs->stops = stops;
        runs->capacity = capacity;
    }
    runs->starts[runs->size] = start;
    runs->stops[runs->size] = stop;
    runs->size++;
    return 0;
}

/* 64 bits of the stream from byte `at` on, most significant first; zeros past the end. */
static inline uint64_t load64(const uint8_t *data, uint64_t size, uint64_t at) {
    uint64_t value = 0;
    if (at + 8 <= size) {
        const uint8_t *p = data + at;
        value = ((uint64_t)p[0] << 56) | ((uint64_t)p[1] << 48) | ((uint64_t)p[2] << 40) |
                ((uint64_t)p[3] << 32) | ((uint64_t)p[4] << 24) | ((uint64_t)p[5] << 16) |
                ((uint64_t)p[6] << 8) | (uint64_t)p[7];
    } else {
        for (int i = 0; i < 8; i++) {
            value <<= 8;
            if (at + (uint64_t)i < size) {
                value |= data[at + (uint64_t)i];
            }
        }
    }
    return value;
}

/* The 8-bit word at bit `bit`; the caller has checked that it lies inside the stream. */
static inline unsigned word_at(const uint8_t *data, uint64_t bit) {
    uint64_t at = bit >> 3;
    unsigned shift = (unsigned)(bit & 7);
    if (shift == 0) {
        return data[at];
    }
    return (((unsigned)data[at] << 8 | data[at + 1]) >> (8 - shift)) & 0xFFu;
}

/* Kept pixel ranges arrive in order and without gaps, so merging needs only the open run. */
typedef struct {
    Runs *runs;
    int open;
    int64_t start;
    unsigned threshold; /* 0..256: alpha >= threshold */
} Builder;

static inline int builder_add(Builder *b, int64_t first, int64_t last, unsigned alpha) {
    if (first >= last) {
        return 0; /* no alpha word in this record: neither splits nor extends a run */
    }
    if (alpha >= b->threshold) {
        if (!b->open) {
            b->open = 1;
            b->start = first;
        }
        return 0;
    }
    if (b->open) {
        b->open = 0;
        return runs_push(b->runs, b->start, first);
    }
    return 0;
}

/* The walk proper; runs nothing of Python, so it may run without the GIL. */
static WalkResult walk(const uint8_t *data, uint64_t size, uint64_t pixels, unsigned threshold,
                       Runs *runs) {
    if (size < 7 || size > (UINT64_MAX >> 4)) {
        return WALK_INVALID;
    }
    uint64_t header = load64(data, size, 0) >> 8; /* the first 56 bits */
    uint64_t num = header >> 24;
    unsigned word_size = (unsigned)((header >> 19) & 31) + 1;
    if (word_size != WORD_BITS || num != pixels * 4) {
        return WALK_INVALID;
    }
    unsigned widths[4];
    for (int i = 0; i < 4; i++) {
        widths[i] = (unsigned)((header >> (15 - 4 * i)) & 15) + 1;
    }
    const uint64_t nbits = size * 8;
    uint64_t pos = HEADER_BITS, words = 0;
    Builder builder = {runs, 0, 0, threshold};
    while (words < num) {
        /* 57 or more bits from pos on: enough for a header (at most 19 bits) and one word. */
        uint64_t top = load64(data, size, pos >> 3) << (pos & 7);
        unsigned width = widths[(top >> 61) & 3];
        uint64_t count = ((top >> (61 - width)) & ((UINT64_C(1) << width) - 1)) + 1;
        uint64_t body = pos + 3 + width;
        if (words + count > num) {
            return WALK_INVALID; /* a record past the image's words */
        }
        if (top >> 63) { /* repeat: one word, count times */
            if (body + WORD_BITS > nbits) {
                return WALK_INVALID; /* truncated */
            }
            unsigned value = (unsigned)(top >> (61 - width - WORD_BITS)) & 0xFFu;
            int64_t first = (int64_t)(words >> 2), last = (int64_t)((words + count) >> 2);
            if (builder_add(&builder, first, last, value) < 0) {
                return WALK_NO_MEMORY;
            }
            pos = body + WORD_BITS;
        } else { /* literal: count words */
            if (body + WORD_BITS * count > nbits) {
                return WALK_INVALID; /* truncated */
            }
            for (uint64_t i = (3 - words) & 3; i < count; i += 4) { /* alpha words: 4p + 3 */
                int64_t pixel = (int64_t)((words + i) >> 2);
                unsigned value = word_at(data, body + WORD_BITS * i);
                if (builder_add(&builder, pixel, pixel + 1, value) < 0) {
                    return WALK_NO_MEMORY;
                }
            }
            pos = body + WORD_BITS * count;
        }
        words += count;
    }
    if (builder.open && runs_push(runs, builder.start, (int64_t)pixels) < 0) {
        return WALK_NO_MEMORY;
    }
    return WALK_OK;
}

/* A Python int (or __index__) as int64; 0 with *ok = 0 when it is none or does not fit. */
static long long as_int64(PyObject *obj, int *ok) {
    *ok = 0;
    PyObject *index = PyNumber_Index(obj);
    if (index == NULL) {
        PyErr_Clear();
        return 0;
    }
    int overflow = 0;
    long long value = PyLong_AsLongLongAndOverflow(index, &overflow);
    Py_DECREF(index);
    if (value == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    *ok = overflow == 0;
    return value;
}

/* The items of a list or tuple of ints 0..255 as a new buffer; NULL with *bad = 1 if some item
 * is anything else, NULL with *bad = 0 and MemoryError set when out of memory. */
static uint8_t *bytes_of_sequence(PyObject *seq, Py_ssize_t *size, int *bad) {
    *bad = 0;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    uint8_t *data = PyMem_Malloc(n > 0 ? (size_t)n : 1);
    if (data == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = items[i];
        long value;
        if (!PyLong_Check(item) || ((value = PyLong_AsLong(item)) == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            value = -1;
        }
        if (value < 0 || value > 255) {
            PyMem_Free(data);
            *bad = 1;
            return NULL;
        }
        data[i] = (uint8_t)value;
    }
    *size = n;
    return data;
}

/* A buffer of integers (any native signed or unsigned width), 0..255 each, as bytes: view's own
 * memory for uint8, else a new buffer (*copy). NULL with *bad = 1 if it is not such a buffer. */
static const uint8_t *bytes_of_view(const Py_buffer *view, uint8_t **copy, uint64_t *size,
                                    int *bad) {
    *bad = 1;
    *copy = NULL;
    const char *format = view->format ? view->format : "B";
    if (format[0] == '@') {
        format++;
    }
    if (view->ndim != 1 || format[0] == '\0' || format[1] != '\0' ||
        strchr("bBhHiIlLqQ", format[0]) == NULL) {
        return NULL;
    }
    Py_ssize_t itemsize = view->itemsize;
    Py_ssize_t n = view->shape ? view->shape[0] : view->len / (itemsize ? itemsize : 1);
    if (itemsize <= 0 || n < 0 || n * itemsize != view->len) {
        return NULL;
    }
    int is_signed = format[0] >= 'a'; /* lower case: signed */
    if (itemsize == 1 && !is_signed) {
        *bad = 0;
        *size = (uint64_t)n;
        return view->buf;
    }
    if (itemsize != 1 && itemsize != 2 && itemsize != 4 && itemsize != 8) {
        return NULL;
    }
    uint8_t *data = PyMem_RawMalloc(n > 0 ? (size_t)n : 1);
    if (data == NULL) {
        *bad = 0;
        return NULL;
    }
    const char *item = view->buf;
    for (Py_ssize_t i = 0; i < n; i++, item += itemsize) {
        int64_t value;
        switch (itemsize) {
        case 1: {
            uint8_t v = *(const uint8_t *)item;
            value = is_signed ? (int64_t)(int8_t)v : (int64_t)v;
            break;
        }
        case 2: {
            uint16_t v;
            memcpy(&v, item, 2);
            value = is_signed ? (int64_t)(int16_t)v : (int64_t)v;
            break;
        }
        case 4: {
            uint32_t v;
            memcpy(&v, item, 4);
            value = is_signed ? (int64_t)(int32_t)v : (int64_t)v;
            break;
        }
        default: {
            uint64_t v;
            memcpy(&v, item, 8);
            value = is_signed ? (int64_t)v : (v > 255 ? -1 : (int64_t)v);
            break;
        }
        }
        if (value < 0 || value > 255) {
            PyMem_RawFree(data);
            return NULL;
        }
        data[i] = (uint8_t)value;
    }
    *bad = 0;
    *copy = data;
    *size = (uint64_t)n;
    return data;
}

static PyObject *as_bytearray(const int64_t *values, size_t n) {
    return PyByteArray_FromStringAndSize((const char *)values, (Py_ssize_t)(n * sizeof(int64_t)));
}

PyDoc_STRVAR(runs_doc,
"runs(data, height, width, threshold, /) -> tuple[bytearray, bytearray] | None\n"
"\n"
"Runs of the pixels whose alpha word is at least threshold, as native int64 (flat pixel\n"
"indices: starts, stops), for a complete, valid Label Studio brush RLE of height x width.\n"
"data: a list or tuple of ints, or a 1-D C-contiguous buffer of native integers, each 0..255.\n"
"None for anything else: other input, a corrupt or truncated stream, word size not 8, a\n"
"stream of another size.");

static PyObject *runs(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "runs() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    int ok_h, ok_w, ok_t;
    long long height = as_int64(args[1], &ok_h);
    long long width = as_int64(args[2], &ok_w);
    long long threshold = as_int64(args[3], &ok_t);
    /* num is 32 bits: height * width * 4 <= 2^32 - 1, checked before multiplying */
    if (!ok_h || !ok_w || !ok_t || height <= 0 || width <= 0 || height > 0x3FFFFFFF ||
        width > 0x3FFFFFFF / height) {
        Py_RETURN_NONE;
    }
    uint64_t pixels = (uint64_t)height * (uint64_t)width;
    unsigned cut = threshold <= 0 ? 0 : threshold > 256 ? 256 : (unsigned)threshold;

    PyObject *obj = args[0];
    Py_buffer view;
    int have_view = 0, bad = 0;
    const uint8_t *data;
    uint8_t *owned = NULL, *seq_owned = NULL;
    uint64_t size = 0;
    if (PyList_CheckExact(obj) || PyTuple_CheckExact(obj)) {
        Py_ssize_t n = 0;
#ifdef Py_GIL_DISABLED
        Py_BEGIN_CRITICAL_SECTION(obj); /* no other thread changes the list meanwhile */
        seq_owned = bytes_of_sequence(obj, &n, &bad);
        Py_END_CRITICAL_SECTION();
#else
        seq_owned = bytes_of_sequence(obj, &n, &bad);
#endif
        if (seq_owned == NULL) {
            if (bad) {
                Py_RETURN_NONE;
            }
            return NULL;
        }
        data = seq_owned;
        size = (uint64_t)n;
    } else {
        if (PyObject_GetBuffer(obj, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        have_view = 1;
        data = NULL;
    }

    Runs result = {NULL, NULL, 0, 0};
    WalkResult status = WALK_INVALID;
    Py_BEGIN_ALLOW_THREADS
    if (have_view) {
        data = bytes_of_view(&view, &owned, &size, &bad);
    }
    if (data != NULL) {
        status = walk(data, size, pixels, cut, &result);
    } else if (!bad) {
        status = WALK_NO_MEMORY;
    }
    if (owned != NULL) {
        PyMem_RawFree(owned);
    }
    Py_END_ALLOW_THREADS
    if (have_view) {
        PyBuffer_Release(&view);
    }
    if (seq_owned != NULL) {
        PyMem_Free(seq_owned);
    }

    PyObject *out = NULL;
    if (status == WALK_OK) {
        PyObject *starts = as_bytearray(result.starts, result.size);
        PyObject *stops = starts ? as_bytearray(result.stops, result.size) : NULL;
        if (stops != NULL) {
            out = PyTuple_Pack(2, starts, stops);
        }
        Py_XDECREF(starts);
        Py_XDECREF(stops);
    } else if (status == WALK_NO_MEMORY) {
        PyErr_NoMemory();
    } else {
        out = Py_NewRef(Py_None);
    }
    free(result.starts);
    free(result.stops);
    return out;
}

static PyMethodDef methods[] = {
    {"runs", (PyCFunction)(void (*)(void))runs, METH_FASTCALL, runs_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef_Slot slots[] = {
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ls_panoptic._rlewalk",
    .m_doc = "The record walk of Label Studio's brush RLE (see ls_panoptic.rle).",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC PyInit__rlewalk(void) { return PyModuleDef_Init(&module_def); }
