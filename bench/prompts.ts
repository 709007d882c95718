/** Short chat-style prompts of the kind a gateway sees, written for the benches (no data set's text). */
export const chatPrompts = [
  'What is 17*23? Show the steps.',
  'Write a Python function that returns the n-th Fibonacci number iteratively.',
  'Summarise the causes of the First World War in three sentences.',
  'Translate "the weather is nice today" into French and German.',
  'Explain the difference between a process and a thread.',
  'A train leaves at 3pm at 60 km/h; another at 4pm at 80 km/h. When does the second catch up?',
  'Which is larger, 2^100 or 10^30? Explain.',
  'Give three arguments for and against nuclear power.',
  'Write a haiku about autumn rain.',
  'How do I reverse a linked list in C?',
  'What are the main differences between TCP and UDP?',
  'Draft a polite email declining a meeting invitation.',
  'Prove that the square root of 2 is irrational.',
  'List five tips for a job interview.',
  'What does the SQL GROUP BY clause do? Give an example.',
  'Why is the sky blue?',
];
