package ratelimit

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	now := time.Unix(0, 0)
	b := &Bucket{Rate: 1, Burst: 3, Now: func() time.Time { return now }}
	for i, want := range []bool{true, true, true, false, false} {
		if got := b.Allow("a"); got != want {
			t.Fatalf("call %d: %v", i, got)
		}
	}
	if !b.Allow("b") {
		t.Fatal("keys are independent")
	}
	now = now.Add(2 * time.Second)
	if !b.Allow("a") || !b.Allow("a") || b.Allow("a") {
		t.Fatal("refill by rate")
	}
	if !(&Bucket{}).Allow("x") {
		t.Fatal("zero rate is unlimited")
	}
}

func TestBucketMaxKeys(t *testing.T) {
	now := time.Unix(0, 0)
	b := &Bucket{Rate: 1, Burst: 1, MaxKeys: 2, Now: func() time.Time { return now }}
	b.Allow("a")
	b.Allow("b")
	if b.Allow("c") {
		t.Fatal("full table accepted a new key")
	}
	now = now.Add(time.Minute)
	if !b.Allow("c") || len(b.keys) > 2 {
		t.Fatal("idle keys not evicted")
	}
}

func TestCounter(t *testing.T) {
	c := &Counter{Max: 2}
	r1, ok1 := c.Acquire("ip")
	_, ok2 := c.Acquire("ip")
	_, ok3 := c.Acquire("ip")
	if !ok1 || !ok2 || ok3 {
		t.Fatal(ok1, ok2, ok3)
	}
	r1()
	r1()
	if _, ok := c.Acquire("ip"); !ok {
		t.Fatal("release did not free a slot")
	}
}

func TestBucketSetRateKeepsState(t *testing.T) {
	now := time.Unix(0, 0)
	b := &Bucket{Rate: 1, Burst: 3, Now: func() time.Time { return now }}
	for range 3 {
		b.Allow("a")
	}
	b.SetRate(10, 5)
	if b.Allow("a") {
		t.Fatal("an exhausted key was refilled by SetRate")
	}
	now = now.Add(time.Second)
	for i := range 5 {
		if !b.Allow("a") {
			t.Fatalf("new rate: call %d refused", i)
		}
	}
	if b.Allow("a") {
		t.Fatal("new burst not applied")
	}
	b.SetRate(0, 0)
	if !b.Allow("a") {
		t.Fatal("zero rate is unlimited")
	}
}

func TestCounterSetMax(t *testing.T) {
	c := &Counter{Max: 3}
	r1, _ := c.Acquire("ip")
	c.Acquire("ip")
	c.SetMax(1)
	if _, ok := c.Acquire("ip"); ok {
		t.Fatal("over the lowered limit")
	}
	r1()
	if _, ok := c.Acquire("ip"); ok {
		t.Fatal("still one over the lowered limit")
	}
	c.SetMax(0)
	if _, ok := c.Acquire("ip"); !ok {
		t.Fatal("zero is no limit")
	}
}
