// A node:test reporter that prints one line: `N passed, N failed`.
export default async function* summary(source) {
  let passed = 0;
  let failed = 0;
  for await (const event of source) {
    const type = event.data?.details?.type;
    if (type === 'suite') continue;
    if (event.type === 'test:pass' && !event.data.skip && !event.data.todo) passed++;
    if (event.type === 'test:fail') failed++;
  }
  yield `\n${passed} passed, ${failed} failed\n`;
}
